"""Settings for the test suite: the production settings plus what only makes tests faster.

A real password hasher costs ~0.4 s per user created; tests create dozens of users and never
need the hash to be strong. Everything else stays as in genreweb/settings.py, so tests exercise
the configuration that runs.
"""

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests never see the real development set beside the project (a test that needs one makes a
# fake folder and points this setting at it).
GENREWEB_DEVSET_DIR = None
