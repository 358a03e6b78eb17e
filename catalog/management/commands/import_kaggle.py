"""python manage.py import_kaggle movies_metadata.csv [--posters DIR | --poster-url-base URL]  (options: catalog.importers.kaggle)"""

from catalog.importers.command import import_command

Command = import_command("kaggle")
