"""Catalog-only routes. The browse ("/") and movie ("/movies/<id>/") pages and relabel are routed
from genreweb/urls.py to ml.views (with bulk, undo and export), which extends catalog.views with model scores (see catalog/views.py)."""

from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("insight/", views.insight_page, name="insight"),
    path("changes/", views.change_set_list, name="changes"),
    path("changes/<int:pk>/", views.change_set_detail, name="change-set"),
    path("changes/<int:pk>/status.json", views.change_set_status, name="change-set-status"),
]
