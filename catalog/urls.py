"""Catalog-only routes. The browse ("/") and movie ("/movies/<id>/") pages and relabel are routed
from genreweb/urls.py to ml.views, which extends catalog.views with model scores (see catalog/views.py)."""

from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("insight/", views.insight_page, name="insight"),
]
