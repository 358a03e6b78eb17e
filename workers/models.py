"""Job records: every long piece of work is a Job that a Celery worker runs.

A Job is the only thing the UI/API see; Celery task ids and messages are an implementation
detail kept on the row for revoking and for the stale-message sweep. Batch prediction jobs
fan out into JobShard rows, one per Celery shard task, so progress, failures and retries
are exact even when a worker dies and a shard message is delivered twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from base.runs import MASK, RUN_FINISHED, SECRET_PARAMS, RunStatus, mask_secrets  # noqa: F401 - re-exported

from .kinds import kind_choices

# A job keeps its most recent log lines only; old lines are dropped with a marker.
MAX_LOG_LINES = 500

# Credentials a job may need while it runs (a TMDB key typed into the import form) are
# masked wherever a job is shown and removed from the row when the job ends, whatever the
# end (base.runs holds the one list and the one masking function).
masked_params = mask_secrets


class Job(models.Model):
    # The one run vocabulary (base.runs), shared with shards, imports and training runs.
    Status = RunStatus

    FINISHED = RUN_FINISHED

    # Choices come from the kinds table (workers.kinds): a new kind needs no migration.
    kind = models.CharField(max_length=16, choices=kind_choices, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0-100")
    step = models.CharField(max_length=255, blank=True, help_text="what the job is doing now")
    log = models.JSONField(default=list, blank=True, help_text=f"last {MAX_LOG_LINES} lines")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="summary written when the job finishes")
    queue = models.CharField(max_length=32, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    # Chained jobs (retrain -> its batch predict child) and retries point back.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Last time a message for this job was sent; the stale sweep compares against it.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Last sign of life of the worker running it (progress, or its heartbeat ticker every
    # GENREWEB_HEARTBEAT_INTERVAL_S); older than GENREWEB_HEARTBEAT_TIMEOUT_S = worker lost.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "enqueued_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job #{self.pk} ({self.status})"

    @property
    def public_params(self) -> dict:
        """Parameters safe to show: credentials masked."""
        return masked_params(self.params)

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def eta_s(self, now=None) -> float | None:
        """Seconds left at the pace so far (elapsed since start x remaining / done); None when
        the job is not running or has not moved yet."""
        from django.utils import timezone

        if self.status != self.Status.RUNNING or not self.started_at or not 0 < self.progress < 100:
            return None
        elapsed = ((now or timezone.now()) - self.started_at).total_seconds()
        return max(0.0, elapsed * (100 - self.progress) / self.progress)


class JobShard(models.Model):
    """One slice of a batch-prediction job: a fixed list of movie ids, run by one task."""

    Status = RunStatus

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField()
    movie_ids = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    predictions_written = models.PositiveIntegerField(default=0)  # rows the shard wrote (predictions, vectors)
    # 0..1 of this shard's movies done, moved per batch while it runs (the job's progress sums it).
    progress = models.FloatField(default=0.0)
    # Deliveries of this shard's message; >1 means redelivery (worker lost, sweep, retry).
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    # Copied from an earlier job's finished shard by a retry; not run again.
    reused = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    # Sent, or last sign of life of the worker running it (heartbeat ticker); the sweep
    # re-sends a running shard whose heartbeat is older than GENREWEB_HEARTBEAT_TIMEOUT_S.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="jobshard_unique_index")]

    def __str__(self) -> str:
        return f"shard {self.index} of job #{self.job_id} ({self.status})"
