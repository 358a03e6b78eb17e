"""python manage.py import_tmdb --from 2020-01-01 --to 2020-12-31 [--api-key KEY | --bearer-token TOKEN]  (options: catalog.importers.tmdb)"""

from catalog.importers.command import import_command

Command = import_command("tmdb")
