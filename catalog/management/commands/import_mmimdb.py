"""python manage.py import_mmimdb path/to/mmimdb/dataset"""

from django.core.management.base import BaseCommand

from catalog.importers.command import add_common_arguments, run_and_report


class Command(BaseCommand):
    help = "Import MM-IMDb: a folder with one <id>.json (title, year, genres, plot) and one <id>.jpeg per movie."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the folder of JSON + JPEG files (or its parent holding dataset/)")
        add_common_arguments(parser)

    def handle(self, *args, **options):
        run_and_report(self, "mmimdb", {"path": options["path"]}, options)
