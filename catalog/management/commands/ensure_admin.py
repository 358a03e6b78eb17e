"""Create a first staff superuser for a new local install, and say how to log in."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the 'admin' superuser if no superuser exists yet (password printed once, kept in the data folder)."

    def handle(self, *args, **options):
        User = get_user_model()
        note = settings.DATA_DIR / "initial-admin.txt"
        if User.objects.filter(is_superuser=True).exists():
            if note.exists():
                self.stdout.write(f"Log in with the credentials in {note}")
            return
        username = os.environ.get("GENREWEB_ADMIN_USERNAME", "admin")
        password = os.environ.get("GENREWEB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        note.write_text(f"username: {username}\npassword: {password}\n")
        note.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(f"Created superuser '{username}' with password '{password}' (also in {note})")
        )
