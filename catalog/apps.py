from django.apps import AppConfig
from django.db.models.signals import post_migrate


def create_cache_table(sender, using="default", verbosity=1, **kwargs):
    """`migrate` also creates the database cache table (throttle counters shared by every web
    process, see CACHES in genreweb/settings.py), so the README's commands keep working.
    createcachetable does nothing when the table exists or the cache is not the database."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=max(verbosity - 1, 0))


class CatalogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self):
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="genreweb-create-cache-table")
