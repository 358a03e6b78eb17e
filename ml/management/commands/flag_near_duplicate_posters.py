from django.core.management.base import BaseCommand, CommandError

from catalog.curation import set_poster_duplicates
from catalog.models import Poster
from ml.services.similar import NEAR_DUPLICATE_THRESHOLD, NotEmbedded, near_duplicate_posters, poster_vector_count


class Command(BaseCommand):
    help = (
        "Flag movies whose poster vector (embedding store, the embed config's image space) has cosine >= "
        "--threshold with an earlier movie's: sets Movie.poster_duplicate_of (a curation flag for review, "
        "admin filter 'near-duplicate poster'), clears it where it no longer holds. Run embed_catalog first."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--threshold",
            type=float,
            default=NEAR_DUPLICATE_THRESHOLD,
            help=f"cosine at or above which two posters are near-duplicates (default {NEAR_DUPLICATE_THRESHOLD})",
        )

    def handle(self, *args, **opts):
        try:
            duplicates = near_duplicate_posters(opts["threshold"])
        except (NotEmbedded, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        with_vector = poster_vector_count()
        with_derivative = Poster.objects.exclude(derivative_checksum="").count()
        result = set_poster_duplicates(duplicates)
        self.stdout.write(
            f"{with_vector} of {with_derivative} preprocessed posters have a stored vector; "
            f"{result['flagged']} movies have a near-duplicate poster (cosine >= {opts['threshold']}): "
            f"{result['set']} newly flagged, {result['cleared']} flags cleared"
        )
        if with_vector < with_derivative:
            self.stdout.write("  posters without a vector were not compared: run embed_catalog")
