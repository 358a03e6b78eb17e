"""Re-send jobs whose broker message vanished and fail running jobs whose worker is gone.

Workers run the same sweep at start and every GENREWEB_REQUEUE_INTERVAL_S; this command is
for operators (e.g. right after a Redis restart) and cron.
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.sweep import requeue_stale_jobs, run_extra_sweeps


class Command(BaseCommand):
    help = "Re-send queued jobs/shards whose message the broker lost; fail jobs whose worker died."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace",
            type=float,
            default=settings.GENREWEB_REQUEUE_GRACE_S,
            help="only touch work last sent more than this many seconds ago "
            f"(default GENREWEB_REQUEUE_GRACE_S = {settings.GENREWEB_REQUEUE_GRACE_S:g})",
        )
        parser.add_argument("--dry-run", action="store_true", help="report what would be done, change nothing")

    def handle(self, *args, grace: float, dry_run: bool, **options):
        report = requeue_stale_jobs(grace, dry_run=dry_run)
        prefix = "dry run: would have " if dry_run else ""
        self.stdout.write(prefix + str(report))
        if not dry_run:
            run_extra_sweeps()  # e.g. webhook deliveries that are due
