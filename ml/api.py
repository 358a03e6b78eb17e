"""ML REST API: model versions (list/detail/promote), predictions (per movie / per version),
ad-hoc prediction (overview + poster upload, throttled), and the catalog movie endpoints
extended with the production model (filters ``model=disagrees|unsure``, queue refresh)."""

from __future__ import annotations

import logging

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
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

from .models import Evaluation, GenreMetric, ModelVersion, Prediction
from .services.inference import refresh_disagreements
from .services.registry import production_version, promote
from .services.review import (
    OPINIONS,
    UNSURE_MIN,
    filter_movies_by_opinion,
    filter_predictions_by_opinion,
    headline_evaluation,
)

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


@extend_schema(
    parameters=[
        OpenApiParameter("movie", int, description="predictions for this movie (all versions)"),
        OpenApiParameter("model_version", int, description="predictions of this model version"),
        OpenApiParameter("disagrees", bool),
        OpenApiParameter("unsure", bool, description=f"uncertainty >= {UNSURE_MIN}"),
    ]
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
        if errors:
            raise serializers.ValidationError(errors)
        for opinion in OPINIONS:  # ?disagrees=1, ?unsure=1
            if params.get(opinion) in ("1", "true"):
                predictions = filter_predictions_by_opinion(predictions, opinion)
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


class MovieViewSet(catalog_api.MovieViewSet):
    """Catalog movies plus the production model: ``model=disagrees|unsure`` filters and a
    review-queue refresh after label changes."""

    @extend_schema(
        parameters=catalog_api.MOVIE_FILTER_PARAMETERS
        + [
            OpenApiParameter(
                "model",
                str,
                enum=list(OPINIONS),
                description="movies where the production model disagrees with the labels / is unsure",
            ),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def filter_movies(self, movies, params):
        wanted = params.get("model")
        if not wanted:
            return movies
        if wanted not in OPINIONS:
            raise serializers.ValidationError({"model": f"Must be {' or '.join(OPINIONS)}."})
        return filter_movies_by_opinion(movies, wanted, production_version())

    def labels_changed(self, movie):
        refresh_disagreements([movie.pk])
