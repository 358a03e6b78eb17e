"""python manage.py import_csv FOLDER_OR_CSV [--posters DIR]"""

from django.core.management.base import BaseCommand

from catalog.importers.command import add_common_arguments, run_and_report


class Command(BaseCommand):
    help = (
        "Import a plain CSV (id, title, year, overview, genres as A|B|C, source_id, poster, imdb_id) "
        "with a poster folder. PATH is a folder holding movies.csv and posters/, or the CSV itself."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="folder with movies.csv (+ posters/), or a CSV file")
        parser.add_argument("--posters", help="poster folder (default: posters/ next to movies.csv)")
        parser.add_argument("--encoding", help="CSV encoding (default: UTF-8, with a reported fallback)")
        add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {"path": options["path"]}
        for name in ("posters", "encoding"):
            if options.get(name):
                params[name] = options[name]
        run_and_report(self, "csv", params, options)
