"""python manage.py preprocess_posters: check posters, build derivatives, refresh movie flags."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from catalog.preprocessing import GRAYSCALE_POLICIES, preprocess_posters


class Command(BaseCommand):
    help = (
        "Decode and verify every poster (flags missing/corrupt/too small/grayscale), build the "
        "resized training derivative, and refresh the movie flags (missing overview/genres, "
        "duplicates, exclusion from training). Safe to re-run: unchanged posters are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--grayscale-policy",
            choices=GRAYSCALE_POLICIES,
            help="keep, convert (to 3 channels) or exclude grayscale posters; default GENREWEB_GRAYSCALE_POLICY",
        )
        parser.add_argument("--min-year", type=int, help="exclude movies released before this year from training")
        parser.add_argument("--max-year", type=int, help="exclude movies released after this year from training")
        parser.add_argument("--no-dedupe", action="store_true", help="do not mark same title + year as duplicates")
        parser.add_argument("--force", action="store_true", help="re-decode posters even if already processed")
        parser.add_argument(
            "--movie-id", type=int, action="append", dest="movie_ids", help="only this movie (repeatable)"
        )

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        interactive = sys.stderr.isatty()
        last_shown = [-1]

        def progress(message: str, fraction: float) -> None:
            if verbosity < 1:
                return
            percent = int(fraction * 100)
            if interactive:
                self.stderr.write(f"\r{percent:3d}% {message}".ljust(80), ending="")
            elif percent // 10 != last_shown[0] // 10 or fraction >= 1:
                self.stderr.write(f"{percent:3d}% {message}")
            last_shown[0] = percent

        try:
            summary = preprocess_posters(
                movie_ids=options["movie_ids"],
                grayscale_policy=options["grayscale_policy"],
                min_year=options["min_year"],
                max_year=options["max_year"],
                dedupe=not options["no_dedupe"],
                force=options["force"],
                progress=progress,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if interactive and verbosity >= 1:
            self.stderr.write("")
        self.stdout.write(format_summary(summary))


def format_summary(summary: dict) -> str:
    posters, movies = summary["posters"], summary["movies"]
    rows = [
        ("Posters", ""),
        ("  total", posters["total"]),
        ("  already processed (skipped)", posters["skipped_unchanged"]),
        ("  changed", posters["changed"]),
        ("  re-checked, unchanged", posters["unchanged"]),
        ("  derivatives written", posters["derivatives_written"]),
        ("  storage errors", posters["storage_errors"]),
        ("  ok", posters["ok"]),
        ("  missing", posters["missing"]),
        ("  corrupt", posters["corrupt"]),
        ("  too small", posters["too_small"]),
        ("  not checked yet", posters["pending"]),
        ("  grayscale", posters["grayscale"]),
        ("Movies", ""),
        ("  total", movies["total"]),
        ("  changed", movies["changed"]),
        ("  unchanged", movies["unchanged"]),
        ("  missing overview", movies["missing_overview"]),
        ("  missing genres", movies["missing_genres"]),
        ("  duplicates", movies["duplicates"]),
        ("  excluded from training", movies["excluded_from_training"]),
        ("  without poster", movies["without_poster"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [
        f"Grayscale policy: {summary['grayscale_policy']}; derivative shorter side {summary['derivative_size']} px; "
        f"year filter: {summary['min_year'] or '-'}..{summary['max_year'] or '-'}; dedupe: {summary['dedupe']}; "
        f"force: {summary['force']}",
    ]
    lines += [f"{label.ljust(width)}  {value:>7}" if value != "" else label for label, value in rows]
    for error in summary["errors"]:
        lines.append(f"  movie {error['movie']}: {error['error']}")
    lines.append(f"Took {summary['seconds']} s")
    return "\n".join(lines)
