"""python manage.py import_csv FOLDER_OR_CSV [--posters DIR]  (options: catalog.importers.plain_csv)"""

from catalog.importers.command import import_command

Command = import_command("csv")
