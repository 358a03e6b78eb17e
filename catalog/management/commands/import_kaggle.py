"""python manage.py import_kaggle movies_metadata.csv [--posters DIR | --poster-url-base URL]"""

from django.core.management.base import BaseCommand

from catalog.importers.command import add_common_arguments, run_and_report


class Command(BaseCommand):
    help = 'Import Kaggle "The Movies Dataset" movies_metadata.csv, with optional posters (folder or URL base).'

    def add_arguments(self, parser):
        parser.add_argument("path", help="movies_metadata.csv (or the folder holding it)")
        posters = parser.add_mutually_exclusive_group()
        posters.add_argument("--posters", help="folder of posters named <tmdb id>.jpg or <imdb id>.jpg")
        posters.add_argument(
            "--poster-url-base", help="URL joined with the poster_path column, e.g. https://image.tmdb.org/t/p/w342"
        )
        parser.add_argument("--encoding", help="CSV encoding (default: UTF-8, with a reported fallback)")
        add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {"path": options["path"]}
        for name in ("posters", "poster_url_base", "encoding"):
            if options.get(name):
                params[name] = options[name]
        run_and_report(self, "kaggle", params, options)
