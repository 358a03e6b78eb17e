"""The catalog page's bulk bar, the confirmation step, the change-set pages with Undo (the
change and its undo run as bulk_labels jobs, here in this process at commit), and the export
download (Django test client; the browser test is test_bulk_browser.py)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from catalog.models import ChangeSet, Genre, LabelChange, Movie
from tests.factories import genre_names, make_movie, make_user
from workers.models import Job


@pytest.fixture
def movies(db):
    Genre.objects.create(name="Comedy")
    return [
        make_movie(title="Old Drama", source_id="a", genres=["Drama"], year=1970),
        make_movie(title="New Drama", source_id="b", genres=["Drama"], year=2015),
        make_movie(title="Late Horror", source_id="c", genres=["Horror"], year=2016),
    ]


@pytest.fixture
def labeler_client(db):
    client = Client()
    client.force_login(make_user("lena"))
    return client


def text(answer) -> str:
    """The page's text without tags (the counts are spans the page updates while it runs)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", answer.content.decode()))


def test_the_catalog_page_has_checkboxes_the_bulk_bar_and_export_links(movies, labeler_client):
    page = labeler_client.get("/?genre=drama&view=list").content.decode()
    assert page.count('class="pick" name="ids"') == 2
    assert 'id="select-page"' in page and "all 2 matching this filter" in page
    assert 'name="filter" value="genre=drama"' in page  # the filter, without view/page
    assert 'href="/export.csv?genre=drama"' in page and 'href="/export.json?genre=drama"' in page
    assert 'href="/changes/"' in page  # the history in the nav


def test_a_viewer_sees_no_bulk_bar_and_cannot_post(movies, settings):
    settings.GENREWEB_ANONYMOUS_READ = True
    viewer = Client()
    page = viewer.get("/").content.decode()
    assert 'id="bulk"' not in page and 'class="pick"' not in page
    assert 'id="export-csv"' in page  # reading and exporting is allowed
    answer = viewer.post(
        "/bulk/", {"action": "add", "genre": "comedy", "scope": "filter", "filter": "", "confirmed": "1"}
    )
    assert answer.status_code in (302, 403) and "/accounts/login/" in answer.get("Location", "/accounts/login/")
    assert not ChangeSet.objects.exists()


def test_bulk_by_filter_asks_then_queues_then_undo(movies, labeler_client, jobs_at_commit):
    form = {"action": "add", "genre": "comedy", "scope": "filter", "filter": "year_min=2000"}
    confirm = labeler_client.post("/bulk/", form)
    assert confirm.status_code == 200 and not ChangeSet.objects.exists()
    page = confirm.content.decode()
    assert 'id="confirm-count">2<' in page and 'name="confirmed" value="1"' in page

    with jobs_at_commit():
        done = labeler_client.post("/bulk/", {**form, "confirmed": "1"})
        # the request answered before the work: a queued change set and its job, nothing written
        change_set, job = ChangeSet.objects.get(), Job.objects.get()
        assert change_set.status == ChangeSet.Status.QUEUED and not change_set.changes.exists()
        assert (job.kind, job.params, job.status) == ("bulk_labels", {"change_set": change_set.pk}, "queued")
        assert genre_names(movies[1]) == {"Drama"}
        queued = labeler_client.get(done["Location"])
        assert (
            'data-status-url="/changes/' in queued.content.decode()
            and 'id="undo-button"' not in queued.content.decode()
        )
        assert "Queued" in text(queued) and "waiting for a worker" in text(queued)
        assert "Adding Comedy to all matching year_min=2000 as job #" in text(queued)  # the request's message
        assert labeler_client.get(f"/changes/{change_set.pk}/status.json").json()["status"] == "queued"
        refused = labeler_client.post(f"/changes/{change_set.pk}/undo/", follow=True)
        assert "has not started yet" in text(refused) and ChangeSet.objects.count() == 1
    assert done.status_code == 302 and done["Location"].startswith(f"/changes/{change_set.pk}/")
    job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)
    assert job.result == {
        "change_set_id": change_set.pk,
        "status": "succeeded",
        "matched": 2,
        "changed": 2,
        "unchanged": 0,
        "skipped": 0,
    }

    shown = text(labeler_client.get(done["Location"]))
    assert "Succeeded" in shown and "2 movies looked at: 2 changed (2 labels added, 0 removed)" in shown
    assert 'id="undo-button"' in labeler_client.get(done["Location"]).content.decode()
    status = labeler_client.get(f"/changes/{change_set.pk}/status.json").json()
    assert (status["status"], status["finished"], status["matched"], status["changed"]) == ("succeeded", True, 2, 2)
    assert genre_names(movies[1]) == {"Drama", "Comedy"} and genre_names(movies[2]) == {"Horror", "Comedy"}
    assert genre_names(movies[0]) == {"Drama"}
    assert "all matching year_min=2000" in labeler_client.get("/changes/").content.decode()

    with jobs_at_commit():
        undone = labeler_client.post(f"/changes/{change_set.pk}/undo/")
    undo = ChangeSet.objects.get(undoes=change_set)
    assert undone["Location"] == f"/changes/{undo.pk}/"
    shown = text(labeler_client.get(undone["Location"]))
    assert f"Undoing bulk change #{change_set.pk} as job #" in shown and "2 changed" in shown
    assert genre_names(movies[1]) == {"Drama"} and genre_names(movies[2]) == {"Horror"}
    again = labeler_client.post(f"/changes/{change_set.pk}/undo/", follow=True)
    assert "already undone" in text(again) and ChangeSet.objects.count() == 2
    assert 'id="undo-button"' not in labeler_client.get(f"/changes/{change_set.pk}/").content.decode()


def test_bulk_remove_on_checked_ids(movies, labeler_client, jobs_at_commit):
    ids = [movies[0].pk, movies[2].pk]
    with jobs_at_commit():
        labeler_client.post(
            "/bulk/", {"action": "remove", "genre": "drama", "scope": "ids", "ids": ids, "filter": "", "confirmed": "1"}
        )
    change_set = ChangeSet.objects.get()
    assert (change_set.changed, change_set.unchanged) == (1, 1)
    assert change_set.selection == {"ids": sorted(ids)}
    assert genre_names(movies[0]) == set() and genre_names(movies[1]) == {"Drama"}
    detail = labeler_client.get(f"/changes/{change_set.pk}/").content.decode()
    assert "Old Drama" in detail and "Removed" in detail


@pytest.mark.parametrize(
    "form",
    [
        {"action": "add", "genre": "comedy", "scope": "ids", "filter": ""},  # nothing checked
        {"action": "add", "genre": "zorblax", "scope": "filter", "filter": ""},
        {"action": "paint", "genre": "comedy", "scope": "filter", "filter": ""},
        {"action": "add", "genre": "comedy", "scope": "ids", "ids": ["x"], "filter": ""},
        {"action": "add", "genre": "comedy", "scope": "filter", "filter": "year_min=soon"},
    ],
)
def test_bad_bulk_forms_change_nothing(movies, labeler_client, form):
    answer = labeler_client.post("/bulk/", {**form, "confirmed": "1"}, follow=True)
    assert "Nothing changed" in answer.content.decode()
    assert not ChangeSet.objects.exists() and not LabelChange.objects.filter(change_set__isnull=False).exists()
    assert not Job.objects.exists()  # refused before anything was queued


def test_export_download_follows_the_page_filter(movies, labeler_client):
    answer = labeler_client.get("/export.csv?genre=drama&page=3&view=list")
    assert answer.status_code == 200 and answer["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert sorted(r["title"] for r in rows) == ["New Drama", "Old Drama"]
    assert labeler_client.get("/export.xml").status_code == 404
    json_answer = labeler_client.get("/export.json")
    assert json_answer["Content-Type"] == "application/json"
    assert b"Late Horror" in b"".join(json_answer.streaming_content)


def test_the_admin_lists_change_sets_read_only(movies):
    from catalog.bulk import apply_bulk

    apply_bulk(Movie.objects.all(), add=[Genre.objects.get(name="Comedy")])
    admin = Client()
    admin.force_login(make_user("root", staff=True, is_superuser=True))
    listing = admin.get("/admin/catalog/changeset/")
    assert listing.status_code == 200 and "add Comedy" in listing.content.decode()
    assert admin.get("/admin/catalog/changeset/add/").status_code == 403
