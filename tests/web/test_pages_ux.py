"""First-run and day-to-day page details: the empty catalog's next step, confirmations,
relative times."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_empty_catalog_offers_staff_an_import(staff_client):
    html = staff_client.get("/").content.decode()
    assert "No movies yet" in html and "No movies match these filters" not in html
    assert 'href="/import/"' in html and "Import movies" in html
    response = staff_client.get("/import/", follow=True)
    assert response.redirect_chain[-1][0] == "/jobs/?kind=import#queue"
    form_html = response.content.decode()
    assert '<details class="panel" open id="queue">' in form_html  # the form is unfolded ...
    assert '<option value="import" selected>' in form_html  # ... with the import kind chosen


def test_empty_catalog_tells_a_labeler_who_imports(labeler_client):
    html = labeler_client.get("/").content.decode()
    assert "No movies yet" in html and "A staff member imports movies" in html
    assert "Import movies</a>" not in html


def test_filters_that_match_nothing_still_say_so(labeler_client, world):
    html = labeler_client.get("/?q=no-such-title-anywhere").content.decode()
    assert "No movies match these filters" in html and "No movies yet" not in html
