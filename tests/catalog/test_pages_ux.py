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


@pytest.mark.parametrize(
    "seconds, text",
    [
        (-3, "just now"),
        (0, "just now"),
        (12, "12 s ago"),
        (59, "59 s ago"),
        (60, "1 min ago"),
        (45 * 60, "45 min ago"),
        (2 * 3600 + 5 * 60, "2 h 5 min ago"),
        (7 * 3600 + 5 * 60, "7 h ago"),
        (30 * 3600, "yesterday"),
        (3 * 86400, "3 days ago"),
    ],
)
def test_relative_times_read_right_at_every_scale(seconds, text):
    from datetime import UTC, datetime, timedelta

    from catalog.templatetags.timeago import ago

    now = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=seconds), now) == text
    assert ago(now - timedelta(days=40), now) == "8 Feb 2026"


def test_cancel_and_promote_forms_ask_for_confirmation(staff_client, staff, candidate_version):
    from workers.models import Job

    job = Job.objects.create(kind="preprocess", requested_by=staff)
    html = staff_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'action="/jobs/{job.pk}/cancel/" data-confirm="Cancel job #{job.pk}' in html
    assert "js/confirm.js" in html
    candidate = candidate_version
    html = staff_client.get(f"/models/{candidate.pk}/").content.decode()
    assert f'action="/models/{candidate.pk}/promote/" data-confirm="Make tiny v2 the production model?' in html


def test_cooccurrence_heatmap_has_a_colour_scale(labeler_client, world):
    response = labeler_client.get("/insight/")
    heatmap = response.context["insight"]["heatmap"]
    # Comedy & Horror and Drama & Romance: 1 shared movie of 2 with either genre.
    assert [t["label"] for t in heatmap["scale"]["ticks"]] == ["0.00", "0.12", "0.25", "0.38", "0.50"]
    darkest = "rgb(31,78,196)"  # the scale's top colour is the most similar pair's colour
    assert heatmap["scale"]["gradient"].endswith(f"{darkest})")
    assert sum(cell["colour"] == darkest for cell in heatmap["cells"]) == 4  # two pairs, both triangles
    html = response.content.decode()
    assert 'id="heat-scale"' in html and ">0.50</span>" in html
