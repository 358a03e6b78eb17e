import time

from django.core.management.base import BaseCommand, CommandError

from ml.services.embeddings import embed_movies, embedding_config
from ml.services.inference import movies_to_predict
from ml.services.params import EMBED_ENCODERS

from ._progress import ConsoleProgress


class Command(BaseCommand):
    help = (
        "Fill the embedding store with the frozen encoders' vectors of every movie's overview and poster "
        "(resumable: stored vectors are skipped). The embed_catalog job does the same over shards on the workers."
    )

    def add_arguments(self, parser):
        parser.add_argument("--encoders", default="text,image", help="comma-separated: text, image (default both)")
        parser.add_argument(
            "--config", help="a frozen preset whose encoders to fill for (default GENREWEB_EMBED_CONFIG)"
        )
        parser.add_argument("--batch-size", type=int, default=256, help="movies read per step")
        parser.add_argument("movie_ids", nargs="*", type=int, help="default: every movie")

    def handle(self, *args, **opts):
        encoders = [e.strip() for e in opts["encoders"].split(",") if e.strip()]
        if not encoders or any(e not in EMBED_ENCODERS for e in encoders):
            raise CommandError(f"--encoders takes {', '.join(EMBED_ENCODERS)}")
        from ml.engine.identity import missing_encoder_packages

        try:
            config = embedding_config(opts["config"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for missing in missing_encoder_packages(config, which=encoders):
            raise CommandError(f"{config.name}: {missing}")
        ids, missing = movies_to_predict(opts["movie_ids"] or None)
        if missing:
            self.stderr.write(f"{missing} movie id(s) do not exist and are skipped")
        started = time.perf_counter()
        result = embed_movies(
            ids, config=config, encoders=encoders, batch_size=opts["batch_size"], progress=ConsoleProgress(self.stderr)
        )
        elapsed = time.perf_counter() - started
        for which, space in result.spaces.items():
            self.stdout.write(f"{which} space: {space}")
        self.stdout.write(
            f"{result.movies} movies in {elapsed:.1f} s: {result.texts_encoded} of {result.texts} texts and "
            f"{result.posters_encoded} of {result.posters} posters encoded (the rest were stored already)"
        )
