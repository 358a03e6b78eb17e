from django.core.management.base import BaseCommand

from ml.services.embeddings import prune_embeddings


class Command(BaseCommand):
    help = (
        "Delete embedding rows no movie's current overview or poster derivative has, and rows of spaces that "
        "neither the embed config's encoders nor any model version use."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count only, delete nothing")

    def handle(self, *args, **opts):
        result = prune_embeddings(dry_run=opts["dry_run"])
        verb = "would delete" if result.dry_run else "deleted"
        self.stdout.write(
            f"{result.rows_before} embedding rows; {verb} {result.deleted}: "
            f"{result.stale_digest_rows} whose overview/poster no movie has now, "
            f"{result.unused_space_rows} in {len(result.unused_spaces)} unused space(s)"
        )
        for space in result.unused_spaces:
            self.stdout.write(f"  unused space: {space}")
        for message in result.skipped:
            self.stderr.write(f"skipped {message}")
