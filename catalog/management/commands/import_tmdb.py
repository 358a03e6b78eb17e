"""python manage.py import_tmdb --from 2020-01-01 --to 2020-12-31 [--api-key KEY | --bearer-token TOKEN]"""

from django.core.management.base import BaseCommand

from catalog.importers.command import add_common_arguments, run_and_report


class Command(BaseCommand):
    help = (
        "Import movies from the TMDB API v3 (discover by release date, details, posters). Credentials "
        "default to TMDB_API_KEY / TMDB_BEARER_TOKEN from the environment."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="date_from", help="first release date, YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", help="last release date, YYYY-MM-DD (default: today)")
        parser.add_argument("--api-key", help="TMDB v3 API key (default: $TMDB_API_KEY)")
        parser.add_argument("--bearer-token", help="TMDB v4 read access token (default: $TMDB_BEARER_TOKEN)")
        parser.add_argument(
            "--poster-size", default="w342", help="TMDB poster size, e.g. w185, w342, original; 'none' skips posters"
        )
        parser.add_argument("--language", default="en-US")
        parser.add_argument(
            "--no-details", action="store_true", help="skip the per-movie details call (faster; no IMDb ids)"
        )
        add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {
            "poster_size": options["poster_size"],
            "language": options["language"],
            "details": not options["no_details"],
        }
        for name in ("date_from", "date_to", "api_key", "bearer_token"):
            if options.get(name):
                params[name] = options[name]
        run_and_report(self, "tmdb", params, options)
