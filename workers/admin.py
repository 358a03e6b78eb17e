from django.contrib import admin

from .models import Job, JobShard


class JobShardInline(admin.TabularInline):
    model = JobShard
    extra = 0
    fields = ("index", "status", "predictions_written", "attempts", "duration_s", "error")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "step", "requested_by", "created_at", "finished_at")
    list_filter = ("kind", "status", "queue")
    search_fields = ("id", "celery_task_id", "step", "error")
    readonly_fields = (
        "celery_task_id",
        "created_at",
        "enqueued_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "log",
        "traceback",
        "result",
        "public_params",
    )
    exclude = ("params",)  # shown masked as public_params
    raw_id_fields = ("requested_by", "parent", "retry_of")
    inlines = [JobShardInline]


@admin.register(JobShard)
class JobShardAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "index", "status", "predictions_written", "attempts", "duration_s")
    list_filter = ("status",)
    raw_id_fields = ("job",)
