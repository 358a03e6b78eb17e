import json

from django.core.management.base import BaseCommand, CommandError

from ml.engine.split import DEFAULT_FRACTIONS, DEFAULT_MIN_GENRE_COUNT, DEFAULT_SEED
from ml.services.snapshots import SnapshotError, build_snapshot

from ._progress import ConsoleProgress


class Command(BaseCommand):
    help = "Freeze the current catalog into a dataset snapshot (labels + stratified split + content hash)."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="")
        # The defaults are the benchmark's split (ml.engine.split), like build_snapshot's.
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
        parser.add_argument(
            "--fractions", type=float, nargs=3, default=DEFAULT_FRACTIONS, metavar=("TRAIN", "VAL", "TEST")
        )
        parser.add_argument(
            "--min-genre-count",
            type=int,
            default=DEFAULT_MIN_GENRE_COUNT,
            help=f"genres with fewer eligible movies are reported as rare (default {DEFAULT_MIN_GENRE_COUNT})",
        )
        parser.add_argument("--keep-rare-genres", action="store_true", help="keep rare genres instead of dropping them")

    def handle(self, *args, **opts):
        try:
            snapshot = build_snapshot(
                name=opts["name"],
                seed=opts["seed"],
                fractions=tuple(opts["fractions"]),
                min_genre_count=opts["min_genre_count"],
                keep_rare_genres=opts["keep_rare_genres"],
                progress=ConsoleProgress(self.stderr),
            )
        except SnapshotError as exc:
            raise CommandError(str(exc)) from exc
        report = snapshot.report
        self.stdout.write(
            f"snapshot {snapshot.pk}: {snapshot.n_members} movies {snapshot.split_counts}, "
            f"{len(snapshot.genres)} genres, hash {snapshot.content_hash}"
        )
        self.stdout.write(f"excluded: {json.dumps(report['excluded'])}")
        if report["rare_genres"]:
            action = "dropped" if report["rare_genres_dropped"] else "kept"
            self.stdout.write(f"rare genres ({action}): {json.dumps(report['rare_genres'])}")
