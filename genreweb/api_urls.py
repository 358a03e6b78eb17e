"""The REST API: one router, each app contributes its viewsets.

Movies are served by ml.api.MovieViewSet, the catalog viewset extended with the production
model's filters (so catalog never imports ml); change sets by workers.api.ChangeSetViewSet (ml's,
run as jobs). Auth: token (Authorization: Token <key>,
from the "My account" page, POST /api/auth/token/, the admin or `manage.py drf_create_token <user>`;
it expires after GENREWEB_TOKEN_TTL_HOURS and DELETE /api/auth/token/ revokes it) or the browser session."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from base.auth import TokenView
from catalog.api import GenreViewSet
from ml.api import (
    LabelIssueViewSet,
    LabelReviewViewSet,
    ModelVersionViewSet,
    MovieViewSet,
    PredictionViewSet,
    PredictView,
    PresetListView,
)
from webhooks.api import DeliveryViewSet, EndpointViewSet
from workers.api import AuditRunViewSet, ChangeSetViewSet, JobViewSet

router = DefaultRouter()
router.register("genres", GenreViewSet, basename="genre")
router.register("movies", MovieViewSet, basename="movie")
router.register("change-sets", ChangeSetViewSet, basename="changeset")
router.register("jobs", JobViewSet, basename="job")
router.register("model-versions", ModelVersionViewSet, basename="modelversion")
router.register("predictions", PredictionViewSet, basename="prediction")
router.register("webhooks", EndpointViewSet, basename="webhook")
router.register("webhook-deliveries", DeliveryViewSet, basename="webhookdelivery")
router.register("audits", AuditRunViewSet, basename="auditrun")
router.register("label-issues", LabelIssueViewSet, basename="labelissue")
router.register("reviews", LabelReviewViewSet, basename="labelreview")

urlpatterns = [
    path("predict/", PredictView.as_view(), name="api-predict"),
    path("model-presets/", PresetListView.as_view(), name="api-model-presets"),
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("", include(router.urls)),
]
