from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, reverse_lazy
from django.utils.text import format_lazy
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from base.auth import ThrottledLoginView, account_page
from catalog.views import poster_file
from ml import views as ml_views
from workers import views as worker_views

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/me/", account_page, name="account"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/", include("genreweb.api_urls")),
    path("jobs/", include("workers.urls")),
    # The catalog's "Import movies" button: the job form with the import kind chosen (catalog
    # does not know the workers app, so the link is named here).
    path(
        "import/",
        RedirectView.as_view(url=format_lazy("{}?kind=import#queue", reverse_lazy("workers:jobs"))),
        name="import-movies",
    ),
    # ... and its one-click import of the development set beside the project, when it is there.
    path("import/devset/", worker_views.import_devset, name="import-devset"),
    path("models/", include("ml.urls")),
    path("webhooks/", include("webhooks.urls")),
    # Browse and movie pages are catalog views extended with model scores/filters in ml.views,
    # routed here so catalog never imports ml (see catalog/views.py).
    path("", ml_views.BrowseView.as_view(), name="home"),
    path("movies/<int:pk>/", ml_views.MovieWithScoresView.as_view(), name="movie"),
    path("movies/<int:pk>/labels/", ml_views.RelabelView.as_view(), name="relabel"),
    # Bulk changes and undos: ml's extensions (the audit filter, the queue refresh) run as jobs.
    path("bulk/", worker_views.BulkLabelView.as_view(), name="bulk-labels"),
    path("changes/<int:pk>/undo/", worker_views.UndoChangeSetView.as_view(), name="undo-change-set"),
    path("export.<str:fmt>", ml_views.ExportView.as_view(), name="export-labels"),
    # Poster files only, for users who may read the catalog; everything else under /media/
    # (model artifacts, embeddings) is a 404. Do not serve MEDIA_ROOT from a proxy either.
    path("media/<path:name>", poster_file, name="poster-file"),
    path("", include("catalog.urls")),
]

handler404 = "genreweb.views.not_found"
