"""python manage.py import_movies KIND [options]: any registered source (catalog.importers.registry)."""

from django.core.management.base import BaseCommand

from catalog.importers import registry
from catalog.importers.command import add_source_arguments, run_and_report, source_params


class Command(BaseCommand):
    help = "Import movies from any registered source; `import_movies KIND --help` lists its options."

    def add_arguments(self, parser):
        kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
        for entry in registry.importers():
            add_source_arguments(kinds.add_parser(entry.kind, help=entry.label, description=entry.help), entry)

    def handle(self, *args, **options):
        entry = registry.get(options["kind"])
        run_and_report(self, entry.kind, source_params(entry, options), options)
