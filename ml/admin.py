"""Admin for ML records. Everything the services create is read-only here: snapshots,
runs, evaluations and predictions are records of what happened, and a model version's
artifact never changes (only its name and notes). Promotion goes through
ml.services.registry.promote so the audit trail stays complete.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count

from .models import (
    AliasChange,
    DatasetSnapshot,
    Evaluation,
    GenreMetric,
    ModelAlias,
    ModelVersion,
    Prediction,
    SnapshotMember,
    TrainingRun,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, not editable: created by services, not by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "n_members", "genre_count", "seed", "short_hash", "created_at", "created_by")
    search_fields = ("name", "content_hash")
    date_hierarchy = "created_at"

    @admin.display(description="genres")
    def genre_count(self, obj):
        return len(obj.genres)

    @admin.display(description="content hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]


@admin.register(SnapshotMember)
class SnapshotMemberAdmin(ReadOnlyAdmin):
    list_display = ("snapshot", "movie_id", "split", "labels", "poster_checksum")
    list_filter = ("split",)
    list_select_related = ("snapshot",)
    raw_id_fields = ("snapshot", "movie")
    search_fields = ("=movie__id", "movie__title")
    show_full_result_count = False  # counting millions of members on every page is slow


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "config_name", "snapshot", "status", "device", "started_at", "finished_at", "created_by")
    list_filter = ("status", "config_name", "device")
    search_fields = ("config_name", "error")
    date_hierarchy = "created_at"
    list_select_related = ("snapshot", "created_by")


class EvaluationInline(admin.TabularInline):
    model = Evaluation
    fields = ("split", "snapshot", "n_examples", "micro_f1", "macro_f1", "samples_f1", "roc_auc_macro", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "__str__", "config_name", "snapshot", "production_alias", "created_at", "short_checksum")
    list_filter = ("config_name",)
    search_fields = ("name", "config_name", "checksum", "=uid")
    readonly_fields = ("uid",) + tuple(f for f in ModelVersion.FROZEN_FIELDS if f != "uid") + ("created_at",)
    fields = ("name", "notes") + readonly_fields
    inlines = [EvaluationInline]
    actions = ["promote_to_production"]
    list_select_related = ("snapshot",)

    def has_add_permission(self, request):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(alias_count=Count("aliases"))

    @admin.display(description="production", boolean=True)
    def production_alias(self, obj):
        return obj.aliases.filter(name=ModelAlias.PRODUCTION).exists() if obj.alias_count else False

    @admin.display(description="checksum")
    def short_checksum(self, obj):
        return obj.checksum[:12]

    @admin.action(description="Promote the selected version to production")
    def promote_to_production(self, request, queryset):
        from .services.registry import promote

        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to promote.", messages.ERROR)
            return
        version = queryset.get()
        promote(version.pk, request.user)
        self.message_user(request, f"{version} is now in production.", messages.SUCCESS)


@admin.register(ModelAlias)
class ModelAliasAdmin(ReadOnlyAdmin):
    list_display = ("name", "model_version", "updated_at", "updated_by")


@admin.register(AliasChange)
class AliasChangeAdmin(ReadOnlyAdmin):
    list_display = ("alias", "previous", "model_version", "user", "created_at")
    list_filter = ("alias",)

    def has_delete_permission(self, request, obj=None):
        return False


class GenreMetricInline(admin.TabularInline):
    model = GenreMetric
    fields = ("genre", "threshold", "f1", "precision", "recall", "roc_auc", "pr_auc", "support", "tp", "fp", "fn", "tn")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    list_display = ("id", "model_version", "snapshot", "split", "n_examples", "micro_f1", "macro_f1", "roc_auc_macro")
    list_filter = ("split",)
    list_select_related = ("model_version", "snapshot")
    exclude = ("curves",)  # large plot data; shown on the model report pages
    inlines = [GenreMetricInline]


@admin.register(GenreMetric)
class GenreMetricAdmin(ReadOnlyAdmin):
    list_display = ("genre", "model_version", "split", "f1", "precision", "recall", "roc_auc", "support")
    list_filter = ("split", "genre")
    list_select_related = ("model_version",)


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ("movie", "model_version", "top_genre", "top_score", "uncertainty", "disagrees", "updated_at")
    list_filter = ("model_version",)
    search_fields = ("movie__title", "=movie__id")
    raw_id_fields = ("movie", "model_version")
    list_select_related = ("movie", "model_version")
    show_full_result_count = False
