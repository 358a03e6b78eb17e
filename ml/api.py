"""ML REST API: model versions (list/detail/promote), predictions (per movie / per version),
ad-hoc prediction (overview + poster upload, throttled), the catalog movie endpoints
extended with the models (the label-audit filter ``audit=<queue>``, queue refresh), and the
label audit's runs, issues and reviews."""

from __future__ import annotations

import logging

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from base.permissions import IsLabelerOrAnonymousRead, IsStaff, IsStaffForWrite
from base.schema import error_responses
from base.text_input import JSONParser
from catalog import api as catalog_api
from catalog.images import ImageRejected, read_upload

from .models import AuditRun, Evaluation, GenreMetric, LabelIssue, LabelReview, ModelVersion, Prediction
from .services.registry import production_version, promote
from .services.review import (
    AUDIT_QUEUES,
    REPLACED_QUEUES,
    REVIEW_ACTIONS,
    ReviewedLabelExport,
    ReviewRefused,
    apply_review,
    filter_movies_by_queue,
    headline_evaluation,
    labels_changed,
)
from .services.similar import DEFAULT_K, MAX_K, SIMILAR_BY, NotEmbedded, similar_movies

logger = logging.getLogger(__name__)

# Scores, thresholds and metrics leave the API with this many decimals: thresholds tuned in
# float32 otherwise read 0.49000000953674316, and nobody needs more than 4 decimals of an F1.
API_FLOAT_DECIMALS = 4


def rounded(value, places: int = API_FLOAT_DECIMALS):
    """``value`` with every float in it (also inside dicts and lists) rounded to ``places``."""
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {key: rounded(item, places) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(item, places) for item in value]
    return value


class RoundedFloatsMixin:
    """Serializers of scores and metrics: every float field comes out ``rounded``, except the
    fields in ``unrounded_fields`` (e.g. a training config, whose learning rate is 3e-05)."""

    unrounded_fields: tuple[str, ...] = ()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        for name, value in data.items():
            if name not in self.unrounded_fields:
                data[name] = rounded(value)
        return data


class GenreMetricSerializer(RoundedFloatsMixin, serializers.ModelSerializer):
    class Meta:
        model = GenreMetric
        fields = [
            "genre",
            "f1",
            "precision",
            "recall",
            "roc_auc",
            "pr_auc",
            "support",
            "threshold",
            "tp",
            "fp",
            "fn",
            "tn",
        ]


class EvaluationSerializer(RoundedFloatsMixin, serializers.ModelSerializer):
    class Meta:
        model = Evaluation
        fields = [
            "id",
            "snapshot",
            "split",
            "n_examples",
            "micro_f1",
            "macro_f1",
            "samples_f1",
            "roc_auc_macro",
            "created_at",
        ]


class EvaluationDetailSerializer(EvaluationSerializer):
    genre_metrics = GenreMetricSerializer(many=True, read_only=True)

    class Meta(EvaluationSerializer.Meta):
        fields = EvaluationSerializer.Meta.fields + ["metrics", "genre_metrics"]


class ModelVersionSerializer(RoundedFloatsMixin, serializers.ModelSerializer):
    is_production = serializers.SerializerMethodField()
    headline = serializers.SerializerMethodField()
    unrounded_fields = ("config", "library_versions")

    class Meta:
        model = ModelVersion
        fields = ["id", "uid", "name", "config_name", "snapshot", "genres", "created_at", "is_production", "headline"]

    def get_is_production(self, version: ModelVersion) -> bool:
        return version.pk == self.context.get("production_id")

    @extend_schema_field(EvaluationSerializer(allow_null=True))
    def get_headline(self, version: ModelVersion):
        evaluation = headline_evaluation(version)
        return EvaluationSerializer(evaluation).data if evaluation else None


class ModelVersionDetailSerializer(ModelVersionSerializer):
    evaluations = EvaluationDetailSerializer(many=True, read_only=True)

    class Meta(ModelVersionSerializer.Meta):
        fields = ModelVersionSerializer.Meta.fields + [
            "config",
            "thresholds",
            "thresholds_by_inputs",
            "checksum",
            "library_versions",
            "training_run",
            "evaluations",
        ]


class PredictionSerializer(RoundedFloatsMixin, serializers.ModelSerializer):
    class Meta:
        model = Prediction
        fields = [
            "id",
            "movie",
            "model_version",
            "scores",
            "predicted",
            "top_genre",
            "top_score",
            "uncertainty",
            "disagrees",
            "disagreement",
            "suggested_add",
            "suggested_remove",
            "labels_at_prediction",
            "inputs",
            "updated_at",
        ]


class PredictRequestSerializer(serializers.Serializer):
    overview = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")
    title = serializers.CharField(
        required=False, allow_blank=True, max_length=500, default="", help_text="read by models whose text has titles"
    )
    year = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1800, max_value=2200)
    poster = serializers.FileField(
        required=False,
        allow_null=True,
        default=None,
        help_text="JPEG/PNG/WebP up to 10 MB; checked with the safe decoder",
    )
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="default: the production model",
    )

    def validate_poster(self, upload):
        if upload is None:
            return None
        try:
            return read_upload(upload)
        except ImageRejected as exc:
            raise serializers.ValidationError(f"Not a usable image: {exc.reason}") from exc

    def validate(self, data):
        if not data["overview"].strip() and data["poster"] is None:
            raise serializers.ValidationError({"overview": "Give an overview, a poster, or both."})
        return data


class ScoreSerializer(serializers.Serializer):
    genre = serializers.CharField()
    score = serializers.FloatField()
    threshold = serializers.FloatField()
    predicted = serializers.BooleanField()


class PredictResponseSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    model_name = serializers.CharField()
    genres = serializers.ListField(child=serializers.CharField())
    scores = ScoreSerializer(many=True)
    uncertainty = serializers.FloatField()
    used_text = serializers.BooleanField(
        help_text="the model read a text input (overview, or title/year if it uses them)"
    )
    used_poster = serializers.BooleanField(help_text="the model read the poster")
    inputs = serializers.ChoiceField(
        choices=["all", "text", "image"],
        help_text="all: every input the model uses was given; text / image: a text+poster model had only that one "
        "(its calibration and thresholds for that case were applied)",
    )
    ignored = serializers.ListField(child=serializers.CharField(), help_text="given inputs this model does not read")
    calibrated = serializers.BooleanField(help_text="scores are calibrated probabilities (fitted on validation)")


class PresetSerializer(serializers.Serializer):
    name = serializers.CharField()
    notes = serializers.CharField()
    recommended = serializers.BooleanField(help_text="the platform's default (train and retrain jobs without a config)")
    config = serializers.DictField(help_text="the full model config of the preset")


class PresetListView(GenericAPIView):
    """The model presets a train or retrain job may name, the recommended (default) one first."""

    permission_classes = [IsLabelerOrAnonymousRead]
    serializer_class = PresetSerializer
    pagination_class = None

    @extend_schema(responses=PresetSerializer(many=True))
    def get(self, request):
        from .engine.registry import preset_list  # config dataclasses only, no torch

        return Response(PresetSerializer(preset_list(), many=True).data)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsStaffForWrite]
    queryset = ModelVersion.objects.select_related("snapshot").prefetch_related("evaluations__genre_metrics")

    def get_serializer_class(self):
        return ModelVersionDetailSerializer if self.action == "retrieve" else ModelVersionSerializer

    def get_serializer_context(self):
        current = production_version()
        return {**super().get_serializer_context(), "production_id": current.pk if current else None}

    @extend_schema(request=None, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def promote(self, request, pk=None):
        version = self.get_object()
        promote(version.pk, user=request.user)
        return Response(ModelVersionSerializer(version, context={"production_id": version.pk}).data)


def replaced_filter_error(name: str) -> str:
    """What a request using a removed in-sample filter is told (400): what replaces it."""
    instead = " or ".join(f"audit={new} (was {old})" for old, new in REPLACED_QUEUES.items())
    return (
        f"The {name} filter was removed: it was the production model judging the labels it was trained on. "
        f"Use the label audit's queues instead: /api/movies/?{instead}, or /api/label-issues/?queue=."
    )


@extend_schema(
    parameters=[
        OpenApiParameter("movie", int, description="predictions for this movie (all versions)"),
        OpenApiParameter("model_version", int, description="predictions of this model version"),
    ],
    description="Readers. Stored predictions; filter by movie and/or model version (at least one for a list). "
    "The former ``disagrees`` / ``unsure`` filters are removed and answer 400: the label audit's queues "
    "replace them (``/api/movies/?audit=``, ``/api/label-issues/?queue=``).",
)
class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Stored predictions; filter by movie and/or model version (at least one for a list)."""

    permission_classes = [IsLabelerOrAnonymousRead]
    serializer_class = PredictionSerializer

    def get_queryset(self):
        predictions = Prediction.objects.order_by("movie_id", "model_version_id")
        if self.action != "list":
            return predictions
        params, errors = self.request.query_params, {}
        for name in ("movie", "model_version"):
            value = params.get(name)
            if value in (None, ""):
                continue
            if not value.isdigit():
                errors[name] = f"Must be an id, got {value!r}."
            else:
                predictions = predictions.filter(**{f"{name}_id": int(value)})
        if not (params.get("movie") or params.get("model_version")):
            errors["movie"] = "Give movie and/or model_version."
        for name in REPLACED_QUEUES:  # ?disagrees=1, ?unsure=1: removed, never silently ignored
            if name in params:
                errors[name] = replaced_filter_error(name)
        if errors:
            raise serializers.ValidationError(errors)
        return predictions


class PredictView(GenericAPIView):
    """Ad-hoc prediction for an overview and/or poster that are not in the catalog."""

    permission_classes = [IsLabelerOrAnonymousRead]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "predict"
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    serializer_class = PredictRequestSerializer

    @extend_schema(
        request={"multipart/form-data": PredictRequestSerializer, "application/json": PredictRequestSerializer},
        responses={200: PredictResponseSerializer, **error_responses(409, 503)},
    )
    def post(self, request):
        data = PredictRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = data.validated_data["model_version"] or production_version()
        if version is None:
            return Response(
                {"model_version": ["No production model yet: train one and promote it first."]},
                status=status.HTTP_409_CONFLICT,
            )
        from .services.inference import predict_raw  # loads torch: only when predicting

        try:
            result = predict_raw(
                data.validated_data["overview"],
                data.validated_data["poster"],
                version,
                title=data.validated_data["title"],
                year=data.validated_data["year"],
            )
        except ImageRejected as exc:  # double check inside the service; still a 400, never a 500
            return Response({"poster": [exc.reason]}, status=status.HTTP_400_BAD_REQUEST)
        except (FileNotFoundError, ValueError):  # the version's artifact is missing or damaged
            # The reason names server paths: it goes to the log, never to the client.
            logger.exception("model version %s cannot be used for an ad-hoc prediction", version.pk)
            return Response(
                {"model_version": [f"Model version {version.pk} cannot be used: its files are missing or damaged."]},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response(rounded(result))


AUDIT_FILTER_PARAMETER = OpenApiParameter(
    "audit",
    str,
    enum=list(AUDIT_QUEUES),
    description="movies in a queue of the latest label audit, as the review pages and /api/label-issues/?queue= "
    "count them: errors (likely label errors), unlabeled (no genres, with suggestions), uncertain (model unsure: "
    "this audit's batch of never-reviewed movies where a person's answer teaches the model most). The former "
    "model=disagrees|unsure filter is removed and answers 400 (audit=errors and audit=uncertain replace it).",
)
MODEL_PARAMETERS = [*catalog_api.MOVIE_FILTER_PARAMETERS, AUDIT_FILTER_PARAMETER]


def filter_by_audit_queue(movies, params):
    """The ``audit`` filter of the movie list, its export and bulk change sets; the removed
    ``model`` filter is refused (400), never ignored (that would mean "every movie")."""
    if "model" in params:
        raise serializers.ValidationError({"model": replaced_filter_error("model")})
    queue = params.get("audit")
    if queue:
        if queue not in AUDIT_QUEUES:
            raise serializers.ValidationError({"audit": f"Must be {' or '.join(AUDIT_QUEUES)}."})
        movies = filter_movies_by_queue(movies, queue)
    return movies


class SimilarQuerySerializer(serializers.Serializer):
    by = serializers.ChoiceField(
        choices=SIMILAR_BY, default="text", help_text="text (overview), poster, or fused (mean of both cosines)"
    )
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, default=DEFAULT_K, help_text="how many neighbours")


class NeighbourSerializer(serializers.Serializer):
    movie_id = serializers.IntegerField()
    title = serializers.CharField()
    year = serializers.IntegerField(allow_null=True)
    score = serializers.FloatField(help_text="cosine similarity (fused: the mean of the text and poster cosines)")
    scores = serializers.DictField(
        child=serializers.FloatField(), help_text="fused only: the text and poster cosines; empty otherwise"
    )


class SimilarResponseSerializer(serializers.Serializer):
    movie = serializers.IntegerField()
    by = serializers.CharField()
    k = serializers.IntegerField()
    results = NeighbourSerializer(many=True, help_text="best first; the movie itself is never in it")


@extend_schema_view(
    export_csv=extend_schema(parameters=MODEL_PARAMETERS),
    export_json=extend_schema(parameters=MODEL_PARAMETERS),
)
class MovieViewSet(catalog_api.MovieViewSet):
    """Catalog movies plus the models: the ``audit=<queue>`` filter (list and export) and a
    review-queue refresh after label changes."""

    exporter = ReviewedLabelExport

    @extend_schema(parameters=MODEL_PARAMETERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def filter_movies(self, movies, params):
        return filter_by_audit_queue(movies, params)

    def labels_changed(self, movie):
        labels_changed([movie.pk])

    @extend_schema(
        parameters=[SimilarQuerySerializer],
        responses={200: SimilarResponseSerializer, **error_responses(409)},
        description="Readers (labelers; anonymous too when anonymous reading is on). The k movies nearest to "
        "this one by cosine over the embedding store's vectors: by its overview (text), its poster, or the "
        "mean of both scores (fused; movies with both vectors). 409 when this movie's vector is not stored "
        "yet (run embed_catalog): nothing is encoded in a request.",
    )
    @action(detail=True, methods=["get"], serializer_class=SimilarResponseSerializer)
    def similar(self, request, pk=None):
        query = SimilarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        movie = self.get_object()
        by, k = query.validated_data["by"], query.validated_data["k"]
        try:
            neighbours = similar_movies(movie, by=by, k=k)
        except NotEmbedded as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        body = {"movie": movie.pk, "by": by, "k": k, "results": [vars(n) for n in neighbours]}
        return Response(SimilarResponseSerializer(body).data)


class ChangeSetViewSet(catalog_api.ChangeSetViewSet):
    """Bulk change sets whose filter may use the ``audit`` filter too; queues and label
    issues refreshed after each batch."""

    filter_params = catalog_api.ChangeSetViewSet.filter_params | {"audit"}

    def filter_movies(self, movies, params):
        return filter_by_audit_queue(movies, params)

    def labels_changed(self, movie_ids):
        labels_changed(movie_ids)


# --- Label audit: runs, issues, reviews -------------------------------------------------------


class AuditRunSerializer(RoundedFloatsMixin, serializers.ModelSerializer):
    class Meta:
        model = AuditRun
        fields = [
            "id",
            "config_name",
            "folds",
            "seed",
            "data_hash",
            "status",
            "genres",
            "thresholds",
            "counts",
            "timings",
            "duration_s",
            "error",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class AuditRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Label audits, newest first. Staff start one through workers (an audit_labels job):
    workers.api extends this viewset with ``create``."""

    permission_classes = [IsStaffForWrite]
    queryset = AuditRun.objects.all()
    serializer_class = AuditRunSerializer


class LabelIssueSerializer(RoundedFloatsMixin, serializers.ModelSerializer):
    genre = serializers.CharField(source="genre.name", read_only=True)
    movie_title = serializers.CharField(source="movie.title", read_only=True)
    evidence = serializers.CharField(read_only=True)

    class Meta:
        model = LabelIssue
        fields = [
            "id",
            "audit",
            "movie",
            "movie_title",
            "genre",
            "kind",
            "flagged",
            "queued",
            "quality",
            "margin",
            "probability",
            "threshold",
            "evidence",
            "resolution",
            "resolved_by",
            "resolved_at",
        ]
        read_only_fields = fields


@extend_schema(
    parameters=[
        OpenApiParameter("audit", int, description="issues of this audit (default: the latest succeeded one)"),
        OpenApiParameter("movie", int),
        OpenApiParameter("genre", str, description="genre name"),
        OpenApiParameter("kind", str, enum=list(LabelIssue.Kind.values)),
        OpenApiParameter(
            "queue",
            str,
            enum=list(AUDIT_QUEUES),
            description="only the open suggestions of the movies in an audit queue (latest audit; the same "
            "movies as /api/movies/?audit=, where a movie of the model-unsure batch may have no suggestion). "
            "The removed in-sample queues (disagrees, unsure) are not accepted.",
        ),
        OpenApiParameter("open", bool, description="only open (true) or only resolved (false) issues"),
    ]
)
class LabelIssueViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Per (movie, genre) label issues of an audit, most likely wrong first (by margin)."""

    permission_classes = [IsLabelerOrAnonymousRead]
    serializer_class = LabelIssueSerializer

    def get_queryset(self):
        from .services.audit import latest_audit
        from .services.review import audit_queue_movies, queue_issues

        issues = LabelIssue.objects.select_related("genre", "movie").order_by("-margin", "id")
        if self.action != "list":
            return issues
        params = self.request.query_params
        for name in ("audit", "movie"):
            if params.get(name) and not params[name].isdigit():
                raise serializers.ValidationError({name: f"Must be an id, got {params[name]!r}."})
        queue = params.get("queue", "")
        if queue and queue not in AUDIT_QUEUES:
            raise serializers.ValidationError({"queue": f"Must be {' or '.join(AUDIT_QUEUES)}."})
        kind = params.get("kind")
        if kind and kind not in LabelIssue.Kind.values:
            raise serializers.ValidationError({"kind": f"Must be {' or '.join(LabelIssue.Kind.values)}."})
        audit = AuditRun.objects.filter(pk=int(params["audit"])).first() if params.get("audit") else latest_audit()
        if audit is None:
            return issues.none()
        if queue:
            issues = (
                queue_issues(queue, audit)
                .filter(movie__in=audit_queue_movies(queue, audit).values("pk"))
                .select_related("genre", "movie")
                .order_by("-margin", "id")
            )
        else:
            issues = issues.filter(audit=audit)
        if params.get("movie"):
            issues = issues.filter(movie_id=int(params["movie"]))
        if params.get("genre"):
            issues = issues.filter(genre__name=params["genre"])
        if kind:
            issues = issues.filter(kind=kind)
        flag = params.get("open")
        if flag in ("1", "true"):
            issues = issues.filter(resolution="")
        elif flag in ("0", "false"):
            issues = issues.exclude(resolution="")
        return issues


class LabelReviewSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelReview
        fields = ["id", "movie", "user", "audit", "label_version", "labels", "verdict", "created_at"]
        read_only_fields = fields


class ReviewActionSerializer(serializers.Serializer):
    movie = serializers.IntegerField(min_value=1)
    action = serializers.ChoiceField(choices=REVIEW_ACTIONS)
    queue = serializers.ChoiceField(choices=list(AUDIT_QUEUES), default="errors")
    label_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="the label version the reviewer saw (all but skip)"
    )
    genre = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=64, help_text="accept / reject: one genre"
    )
    genres = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_null=True,
        default=None,
        help_text="edit: the new set of genre names",
    )


class ReviewResultSerializer(serializers.Serializer):
    action = serializers.CharField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    label_version = serializers.IntegerField()
    review = LabelReviewSerializer(allow_null=True)


@extend_schema(parameters=[OpenApiParameter("movie", int), OpenApiParameter("user", int)])
class LabelReviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Review records; POST performs a review action on an audit-queue item (labelers)."""

    permission_classes = [IsLabelerOrAnonymousRead]
    serializer_class = LabelReviewSerializer

    def get_queryset(self):
        reviews = LabelReview.objects.order_by("-created_at", "-id")
        if self.action != "list":
            return reviews
        params = self.request.query_params
        for name in ("movie", "user"):
            value = params.get(name)
            if value:
                if not value.isdigit():
                    raise serializers.ValidationError({name: f"Must be an id, got {value!r}."})
                reviews = reviews.filter(**{f"{name}_id": int(value)})
        return reviews

    @extend_schema(
        request=ReviewActionSerializer,
        responses={200: ReviewResultSerializer, **error_responses(400, 404, 409)},
    )
    def create(self, request):
        from catalog.labels import StaleLabels
        from catalog.models import Genre, Movie

        data = ReviewActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        movie = Movie.objects.filter(pk=v["movie"]).first()
        if movie is None:
            return Response({"detail": "No such movie."}, status=status.HTTP_404_NOT_FOUND)
        genres = None
        if v["action"] == "edit":
            names = list(dict.fromkeys(v["genres"] or []))
            genres = list(Genre.objects.filter(name__in=names))
            unknown = sorted(set(names) - {g.name for g in genres})
            if unknown:
                raise serializers.ValidationError({"genres": f"Unknown genre(s): {', '.join(unknown)}."})
        try:
            outcome = apply_review(
                movie,
                request.user,
                v["action"],
                label_version=v.get("label_version"),
                queue=v["queue"],
                genre=v["genre"],
                genres=genres,
            )
        except StaleLabels as stale:
            return Response(
                {"detail": str(stale), "labels": stale.genre_names, "label_version": stale.version},
                status=status.HTTP_409_CONFLICT,
            )
        except ReviewRefused as refused:
            raise serializers.ValidationError({"action": str(refused)}) from refused
        return Response(
            {
                "action": outcome.action,
                "added": outcome.added,
                "removed": outcome.removed,
                "label_version": outcome.label_version,
                "review": LabelReviewSerializer(outcome.review).data if outcome.review else None,
            }
        )
