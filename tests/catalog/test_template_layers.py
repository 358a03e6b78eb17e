"""Catalog templates know nothing of ml: the ml pages extend them and fill their empty blocks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import RequestFactory
from django.test.signals import template_rendered

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_catalog_templates_include_no_ml_template():
    offenders = [
        f"{path.name}: {match}"
        for path in sorted((TEMPLATES / "catalog").glob("**/*.html"))
        for match in re.findall(r"{%\s*(?:include|extends)\s+[\"']ml/[^\"']*[\"']", path.read_text())
    ]
    assert offenders == []


def _rendered_templates(view, request, **kwargs) -> tuple[list[str], str]:
    names: list[str] = []

    def record(sender, template, context, **extra):
        names.append(template.name)

    template_rendered.connect(record)
    try:
        response = view(request, **kwargs)
        response.render()
    finally:
        template_rendered.disconnect(record)
    return names, response.content.decode()


@pytest.mark.django_db
def test_catalog_pages_render_without_ml_and_ml_pages_fill_the_blocks(world, labeler):
    from catalog.models import Movie
    from catalog.views import CatalogView, MovieView
    from ml.views import BrowseView, MovieWithScoresView

    movie = Movie.objects.get(title="Laugh Track")
    factory = RequestFactory()

    def get(path):
        request = factory.get(path)
        request.user = labeler
        return request

    names, html = _rendered_templates(CatalogView.as_view(), get("/"))
    assert "catalog/browse.html" in names and not [n for n in names if n.startswith("ml/")]
    assert "disagrees</span>" not in html
    names, html = _rendered_templates(MovieView.as_view(), get("/m/"), pk=movie.pk)
    assert "catalog/movie.html" in names and not [n for n in names if n.startswith("ml/")]
    assert "← back to the catalog" in html and "Production model" not in html

    names, html = _rendered_templates(BrowseView.as_view(), get("/"))
    assert names[:2] == ["ml/browse.html", "catalog/browse.html"] and "ml/_prediction_badge.html" in names
    assert "disagrees</span>" in html
    names, html = _rendered_templates(MovieWithScoresView.as_view(), get("/m/"), pk=movie.pk)
    assert names[:2] == ["ml/movie.html", "catalog/movie.html"] and "ml/_score_bars.html" in names
    assert "← back to the catalog" in html and "Production model" in html
