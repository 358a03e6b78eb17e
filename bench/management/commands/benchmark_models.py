"""Thin wrapper: ``python manage.py benchmark_models --data ../shared/data/devset``.

The work is in ml.engine.benchmark, which reads movies.csv directly and writes nothing to
the database.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from ml.engine import benchmark


class Command(BaseCommand):
    help = "Train every model family on a devset folder and write results/benchmark.{csv,md,json}."

    def add_arguments(self, parser):
        benchmark.add_arguments(parser)

    def handle(self, *args, **options):
        try:
            benchmark.run_from_args(options, command="python manage.py benchmark_models " + " ".join(sys.argv[2:]))
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
