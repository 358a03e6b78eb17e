"""A new page is a view in the app that owns it behind one base.permissions guard, one route in
that app's urls.py, a template under templates/<app>/ that extends base.html, and a nav link
(README, "How to extend -> Add a page"). This test follows those steps with a tiny "genre
counts" page defined here, and checks that every route of the project denies by default: an
anonymous visitor reaches only the pages meant to be public.
"""

from __future__ import annotations

import re

import pytest
from django.db.models import Count
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, get_resolver, include, path, reverse

import genreweb.urls
from base.permissions import reader_required, staff_required
from catalog.models import Genre
from tests.factories import make_movie

# --- step 1: the view, in the app that owns the data (here: catalog), behind one guard -------


@reader_required  # labelers; anonymous visitors too when GENREWEB_ANONYMOUS_READ is on
def genre_counts(request):
    genres = Genre.objects.annotate(n=Count("movies")).order_by("-n", "name")
    return render(request, "catalog/genre_counts.html", {"genres": genres})


@staff_required  # a page only staff may open
def genre_counts_staff(request):
    return genre_counts(request)


# --- step 2: its routes, in the app's urls.py (app_name = the app), included once ------------

app_urls = (
    [
        path("genres/", genre_counts, name="genre_counts"),
        path("genres/staff/", genre_counts_staff, name="genre_counts_staff"),
    ],
    "catalog_demo",  # a real page uses its app's namespace ("catalog"); here a second one
)
urlpatterns = [path("", include(app_urls)), *genreweb.urls.urlpatterns]

# --- step 3: its template, templates/<app>/<page>.html, extending base.html ------------------

TEMPLATE = """{% extends "base.html" %}
{% block title %}Genre counts · genreweb{% endblock %}
{% block content %}<h1>Genre counts</h1>
<ul id="genre-counts">{% for genre in genres %}<li>{{ genre.name }}: {{ genre.n }}</li>{% endfor %}</ul>
{% endblock %}"""


@pytest.fixture
def page_template(settings, tmp_path):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "genre_counts.html").write_text(TEMPLATE)
    engine = settings.TEMPLATES[0]
    settings.TEMPLATES = [{**engine, "DIRS": [tmp_path, *engine["DIRS"]]}]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_a_new_page_is_a_guarded_view_a_route_and_a_template(page_template, client, labeler_client, staff_client):
    make_movie(title="One", genres=["Drama", "Comedy"], source_id="p1")
    make_movie(title="Two", genres=["Drama"], source_id="p2")
    url = reverse("catalog_demo:genre_counts")
    assert url == "/genres/"

    # Deny by default: an anonymous visitor is sent to the login page.
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")

    response = labeler_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.findall(r"<li>(\w+): (\d+)</li>", html) == [("Drama", "2"), ("Comedy", "1")]
    assert "<title>Genre counts · genreweb</title>" in html
    # It sits in the site's frame: base.html's nav (step 4 adds the page's own link there).
    assert 'href="/insight/"' in html and 'href="/accounts/me/"' in html

    staff_url = reverse("catalog_demo:genre_counts_staff")
    assert labeler_client.get(staff_url).status_code == 403
    assert staff_client.get(staff_url).status_code == 200


# --- every route of the project denies an anonymous visitor, unless it is meant to be public --

# Paths an anonymous visitor may open (prefix match); everything else must redirect to the login
# page, or answer 401/403 (the API), or 404/405 (a route that needs an object or a POST).
# The OpenAPI schema and its docs pages (/api/schema/, /api/docs/, /api/redoc/) are not public:
# they need a signed-in user like the data endpoints they describe.
PUBLIC = ("/accounts/login/", "/accounts/logout/", "/healthz", "/admin/")


def concrete_paths(patterns, prefix: str = ""):
    """One concrete path per route: converters filled with a plausible value."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        if isinstance(pattern, URLResolver):
            yield from concrete_paths(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            route = re.sub(r"<int:\w+>", "1", route)
            route = re.sub(r"<path:\w+>", "posters/x.jpg", route)
            route = re.sub(r"<(?:str|slug):\w+>", "errors", route)
            if re.search(r"[<>()\[\]?*+]", route):  # a regex route (e.g. the admin's): skipped
                continue
            yield "/" + route


@pytest.mark.django_db
def test_every_route_denies_an_anonymous_visitor_by_default(client, world):
    checked = []
    for url in sorted(set(concrete_paths(get_resolver().url_patterns))):
        if url.startswith(PUBLIC):
            continue
        response = client.get(url, follow=True)  # a redirect (e.g. /import/) must end at the login too
        if response.redirect_chain:
            assert response.redirect_chain[-1][0].startswith("/accounts/login/"), (url, response.redirect_chain)
        else:
            assert response.status_code in (401, 403, 404, 405), (url, response.status_code)
        checked.append(url)
    assert {"/", "/insight/", "/jobs/", "/models/", "/api/movies/", "/api/jobs/", "/movies/1/"} <= set(checked)
