"""Settings of the Celery workers that the fault tests start (tests/workers/test_faults.py):
the test settings plus the fault-injection app (tests/workers/faults.py). Production never
loads either."""

from genreweb.settings_test import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.workers.faults.FaultsConfig"]  # noqa: F405
