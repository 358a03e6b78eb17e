"""python manage.py import_mmimdb path/to/mmimdb/dataset  (options: catalog.importers.mmimdb)"""

from catalog.importers.command import import_command

Command = import_command("mmimdb")
