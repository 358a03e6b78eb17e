from django.db import migrations, models

# Search on the browse page and the API is title/overview ``icontains``, which Django writes
# as UPPER(col) LIKE UPPER('%term%'). On PostgreSQL, trigram GIN indexes on those exact
# expressions answer it without scanning 100k rows. SQLite has no GIN: skipped there.
TRIGRAM_SQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS movie_title_trgm_idx ON catalog_movie USING gin (UPPER(title) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS movie_overview_trgm_idx ON catalog_movie USING gin (UPPER(overview) gin_trgm_ops)",
]
DROP_SQL = ["DROP INDEX IF EXISTS movie_title_trgm_idx", "DROP INDEX IF EXISTS movie_overview_trgm_idx"]


def add_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in TRIGRAM_SQL:
            schema_editor.execute(sql)


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in DROP_SQL:
            schema_editor.execute(sql)


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0003_importrun_warnings'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='movie',
            index=models.Index(fields=['-popularity', 'title', 'id'], name='movie_browse_order_idx'),
        ),
        migrations.RunPython(add_trigram_indexes, drop_trigram_indexes),
    ]
