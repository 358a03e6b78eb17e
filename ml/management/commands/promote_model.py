from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ml.models import ModelVersion
from ml.services.registry import production_version, promote


class Command(BaseCommand):
    help = "Point the production alias at a model version (one transaction, audited)."

    def add_arguments(self, parser):
        parser.add_argument("model_version", type=int)
        parser.add_argument("--user", help="username recorded as the promoter")

    def handle(self, *args, **opts):
        if not ModelVersion.objects.filter(pk=opts["model_version"]).exists():
            raise CommandError(f"model version {opts['model_version']} does not exist")
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"no user named {opts['user']!r}")
        previous = production_version()
        promote(opts["model_version"], user)
        self.stdout.write(f"production: {previous.pk if previous else 'none'} -> {opts['model_version']}")
