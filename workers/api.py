"""Jobs REST API: list/detail for readers; create, cancel and retry for staff. Everything goes
through workers.jobs (enqueue/cancel/retry), which validates parameters per kind (workers.kinds).
ml's label audits and change sets are extended here with what queues jobs (an audit; a bulk
change or undo, answered 202 while its job runs)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from base.permissions import IsStaff, IsStaffForWrite
from base.schema import error_responses
from base.text_input import NulFreeJSONField
from catalog import api as catalog_api
from ml import api as ml_api

from . import jobs, kinds
from .kinds import InvalidJobParams
from .models import Job, JobShard


class JobShardSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobShard
        fields = ["index", "status", "predictions_written", "attempts", "reused", "error", "duration_s"]


class JobSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", default=None, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "params",
            "status",
            "progress",
            "step",
            "requested_by",
            "error",
            "result",
            "queue",
            "parent",
            "retry_of",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [f for f in fields if f not in ("kind", "params")]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["params"] = instance.public_params
        return data


class JobDetailSerializer(JobSerializer):
    shards = JobShardSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["log", "traceback", "cancel_requested", "shards"]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=kinds.kind_choices())
    params = NulFreeJSONField(required=False, default=dict, help_text="per kind")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = kinds.kind_choices()  # kinds registered after start-up too
        self.fields["params"].help_text = params_help()


def params_help() -> str:
    """Each kind's parameters, from its schema (what the queue-job form shows, too)."""
    parts = []
    for kind in kinds.KINDS.values():
        schema = kind.schema()
        names = ", ".join(param.name for param in schema.fields()) if schema is not None else "a JSON object"
        parts.append(f"{kind.name}: {{{names}}}")
    return "Per kind (unknown parameters are refused): " + "; ".join(parts) + "."


@extend_schema(
    parameters=[
        OpenApiParameter("status", str, enum=list(Job.Status.values)),
        OpenApiParameter("kind", str, enum=list(kinds.KINDS)),
    ]
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsStaffForWrite]

    def get_queryset(self):
        found = Job.objects.select_related("requested_by")
        if self.action == "retrieve":
            found = found.prefetch_related("shards")
        for name, values in (("status", Job.Status.values), ("kind", list(kinds.KINDS))):
            value = self.request.query_params.get(name)
            if value:
                if value not in values:
                    raise serializers.ValidationError({name: f"Must be one of {', '.join(values)}."})
                found = found.filter(**{name: value})
        return found

    def get_serializer_class(self):
        if self.action == "create":
            return JobCreateSerializer
        return JobDetailSerializer if self.action in ("retrieve", "cancel", "retry") else JobSerializer

    @extend_schema(request=JobCreateSerializer, responses={201: JobDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = jobs.enqueue(data.validated_data["kind"], data.validated_data["params"], request.user)
        except InvalidJobParams as exc:
            # Field names of the kind's parameters, nested under "params" like DRF does.
            return Response({"params": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: JobDetailSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def cancel(self, request, pk=None):
        try:
            job = jobs.cancel(self.get_object(), request.user)
        except jobs.JobError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobDetailSerializer(job).data)

    @extend_schema(request=None, responses={201: JobDetailSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def retry(self, request, pk=None):
        try:
            job = jobs.retry(self.get_object(), request.user)
        except jobs.JobError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except InvalidJobParams as exc:
            return Response({"params": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


class AuditRunCreateSerializer(serializers.Serializer):
    config = serializers.CharField(required=False, max_length=120, help_text="a frozen-encoder preset")
    folds = serializers.IntegerField(required=False, min_value=2, max_value=20)
    seed = serializers.IntegerField(required=False)


class AuditRunViewSet(mixins.CreateModelMixin, ml_api.AuditRunViewSet):
    """ml's label audits plus ``create`` for staff: queues an audit_labels job (the job's
    result names the AuditRun it stored)."""

    @extend_schema(request=AuditRunCreateSerializer, responses={201: JobDetailSerializer, **error_responses(400)})
    def create(self, request, *args, **kwargs):
        data = AuditRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = jobs.enqueue(kinds.AUDIT_LABELS, dict(data.validated_data), request.user)
        except InvalidJobParams as exc:
            return Response({"params": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobDetailSerializer(job).data, status=status.HTTP_201_CREATED)


class QueuedChangeSetSerializer(catalog_api.ChangeSetSerializer):
    """A change set just queued, and the job that runs it."""

    job = serializers.IntegerField(help_text="the bulk_labels job that runs it (GET /api/jobs/{id}/)")
    job_url = serializers.URLField(help_text="that job's URL")

    class Meta(catalog_api.ChangeSetSerializer.Meta):
        fields = [*catalog_api.ChangeSetSerializer.Meta.fields, "job", "job_url"]


class ChangeSetViewSet(ml_api.ChangeSetViewSet):
    """ml's change sets (the audit filter, the review-queue refresh) whose bulk changes and
    undos run as bulk_labels jobs: create and undo answer 202 at once, with the queued change
    set and its job; GET /api/change-sets/{id}/ follows its status and counts."""

    def start(self, change_set, movies) -> dict:
        job = jobs.enqueue_change_set(change_set, self.request.user)
        return {"job": job.pk, "job_url": self.request.build_absolute_uri(reverse("job-detail", args=[job.pk]))}

    @extend_schema(
        request=catalog_api.BulkChangeSerializer,
        responses={202: QueuedChangeSetSerializer, **error_responses(400)},
        description="Labelers only. Add and/or remove genres on many movies in one audited change set (each movie "
        "locked and written like PATCH /api/movies/{id}/labels/; movies already as asked count as "
        "unchanged). Checked at once (400: no genre, a genre both added and removed, a bad filter, too many "
        "ids), then run by a job: 202 with the change set (status queued) and its job. GET "
        "/api/change-sets/{id}/ shows its status and counts as it runs (they move per batch of 500 movies); "
        "a filter is evaluated when the job starts.",
    )
    def create(self, request):
        return super().create(request)

    @extend_schema(
        request=None,
        responses={202: QueuedChangeSetSerializer, **error_responses(409)},
        description="Labelers only. Undo the change set: a new change set (kind undo) that reverts exactly the label "
        "changes it made, run by a job (202 with the undo, queued, and its job). A genre changed again since "
        "is left as it is and listed in skipped_detail. 409 at once if it was already undone (an undo queued "
        "or running counts) or is still queued or running; an undo can be undone (a redo).",
    )
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        return super().undo(request, pk)
