import time

from django.core.management.base import BaseCommand, CommandError

from catalog.models import Movie
from ml.models import ModelVersion
from ml.services.inference import predict_movies
from ml.services.registry import production_version

from ._progress import ConsoleProgress


class Command(BaseCommand):
    help = "Predict genres for movies with a model version (default: production) and store Prediction rows."

    def add_arguments(self, parser):
        parser.add_argument("--model-version", type=int, help="default: the production version")
        parser.add_argument("--all", action="store_true", help="every movie in the catalog")
        parser.add_argument("movie_ids", nargs="*", type=int)
        parser.add_argument("--batch-size", type=int, default=64)

    def handle(self, *args, **opts):
        version_id = opts["model_version"]
        if version_id is None:
            version = production_version()
            if version is None:
                raise CommandError("no production model: pass --model-version or promote one")
            version_id = version.pk
        elif not ModelVersion.objects.filter(pk=version_id).exists():
            raise CommandError(f"model version {version_id} does not exist")
        if opts["all"] == bool(opts["movie_ids"]):
            raise CommandError("give movie ids or --all (not both)")
        ids = list(Movie.objects.order_by("id").values_list("id", flat=True)) if opts["all"] else opts["movie_ids"]
        started = time.perf_counter()
        written = predict_movies(version_id, ids, batch_size=opts["batch_size"], progress=ConsoleProgress(self.stderr))
        elapsed = time.perf_counter() - started
        self.stdout.write(
            f"{written} predictions stored with model version {version_id} in {elapsed:.1f} s "
            f"({written / elapsed if elapsed else 0:.1f} movies/s)"
        )
