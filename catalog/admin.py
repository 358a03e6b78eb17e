from django.contrib import admin

from .models import Genre, ImportRun, LabelChange, Movie, MovieGenre, Poster


@admin.register(Genre)
class GenreAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "tmdb_id")
    search_fields = ("name", "slug")


@admin.register(Movie)
class MovieAdmin(admin.ModelAdmin):
    list_display = ("title", "year", "tmdb_id", "imdb_id", "source", "label_source")
    list_filter = ("source", "label_source", "missing_overview", "missing_genres")
    search_fields = ("title", "original_title", "imdb_id", "=tmdb_id")


admin.site.register(Poster)
admin.site.register(MovieGenre)
admin.site.register(LabelChange)
admin.site.register(ImportRun)
