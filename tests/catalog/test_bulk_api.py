"""The change-set API (list, detail, create by ids or filter, undo, changes; create and undo
answer 202 and a bulk_labels job runs them, here in this process at commit) and the export
endpoints (CSV and JSON, streamed, with provenance), with their permissions and errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from catalog.labels import change_labels
from catalog.models import ChangeSet, Genre, Movie
from tests.factories import api_client_for, genre_names, make_movie, make_user
from workers.models import Job


@pytest.fixture
def movies(db):
    return [
        make_movie(title="Old Drama", source_id="a", genres=["Drama"], year=1970, tmdb_id=11),
        make_movie(title="New Drama", source_id="b", genres=["Drama"], year=2015),
        make_movie(title="=HYPERLINK(1)", source_id="c", genres=["Horror"], year=2001),
    ]


@pytest.fixture
def clients(db):
    lena = make_user("lena")
    return {"anonymous": api_client_for(None), "labeler": api_client_for(lena)}


@pytest.fixture
def post_and_run(jobs_at_commit):
    """POST, then run the job it queued; returns the answer (202) and the change set as GET shows it."""

    def post(api, url, body=None):
        with jobs_at_commit():
            answer = api.post(url, body, format="json")
        assert answer.status_code == 202, answer.content
        return answer, api.get(f"/api/change-sets/{answer.json()['id']}/").json()

    return post


def test_create_by_filter_then_undo_then_refuse_a_second_undo(movies, clients, jobs_at_commit):
    api = clients["labeler"]
    Genre.objects.create(name="Comedy")
    with jobs_at_commit():
        answer = api.post(
            "/api/change-sets/",
            {"add": ["comedy"], "filter": {"genre": "drama", "year_min": "2000"}, "description": "new dramas"},
            format="json",
        )
        # answered before the work: 202, the change set queued, its job named
        assert answer.status_code == 202, answer.content
        queued = answer.json()
        assert (queued["status"], queued["matched"], queued["changed"]) == ("queued", 0, 0)
        job = Job.objects.get()
        assert queued["job"] == job.pk and queued["job_url"].endswith(f"/api/jobs/{job.pk}/")
        assert job.params == {"change_set": queued["id"]} and genre_names(movies[1]) == {"Drama"}
        assert api.get(f"/api/change-sets/{queued['id']}/").json()["status"] == "queued"
        early = api.post(f"/api/change-sets/{queued['id']}/undo/")
        assert early.status_code == 409 and "not started yet" in early.json()["detail"]
    body = api.get(f"/api/change-sets/{queued['id']}/").json()
    assert body["kind"] == "bulk" and body["status"] == "succeeded" and body["user"] == "lena"
    assert (body["matched"], body["changed"], body["unchanged"]) == (1, 1, 0)
    assert body["selection"] == {"filter": {"genre": "drama", "year_min": "2000"}}
    assert genre_names(movies[1]) == {"Drama", "Comedy"} and genre_names(movies[0]) == {"Drama"}
    assert api.get(queued["job_url"]).json()["status"] == "succeeded"

    changes = api.get(f"/api/change-sets/{body['id']}/changes/").json()
    assert [(c["title"], c["genre"], c["action"]) for c in changes["results"]] == [("New Drama", "Comedy", "added")]
    assert api.get("/api/change-sets/").json()["results"][0]["id"] == body["id"]

    with jobs_at_commit():
        undo = api.post(f"/api/change-sets/{body['id']}/undo/")
    assert undo.status_code == 202 and undo.json()["undoes"] == body["id"] and undo.json()["status"] == "queued"
    assert api.get(f"/api/change-sets/{undo.json()['id']}/").json()["changed"] == 1
    assert genre_names(movies[1]) == {"Drama"}
    assert api.get(f"/api/change-sets/{body['id']}/").json()["undone_by"] == undo.json()["id"]
    again = api.post(f"/api/change-sets/{body['id']}/undo/")
    assert again.status_code == 409 and "already undone" in again.json()["detail"]


def test_create_by_ids_and_the_undo_reports_a_movie_changed_since(movies, clients, post_and_run):
    api = clients["labeler"]
    _, bulk = post_and_run(api, "/api/change-sets/", {"remove": ["Drama"], "movies": [movies[0].pk, movies[1].pk]})
    assert bulk["changed"] == 2
    change_labels(movies[0], add=[Genre.objects.get(name="Drama")], user=make_user("pat"))  # a person puts it back
    _, undo = post_and_run(api, f"/api/change-sets/{bulk['id']}/undo/")
    assert undo["changed"] == 1 and undo["skipped"] == 0  # already as the undo would make it: nothing to do
    assert genre_names(movies[0]) == {"Drama"} and genre_names(movies[1]) == {"Drama"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"add": ["Drama"]}, "movies"),  # neither ids nor filter
        ({"add": ["Drama"], "movies": [1], "filter": {}}, "movies"),  # both
        ({"movies": [1]}, "add"),  # nothing to do
        ({"add": ["Drama"], "remove": ["drama"], "movies": [1]}, "remove"),
        ({"add": ["Zorblax"], "movies": [1]}, "add"),
        ({"add": ["Drama"], "filter": {"genres": "drama"}}, "filter"),  # misspelt: never "every movie"
        ({"add": ["Drama"], "filter": {"year_min": "soon"}}, "filter"),
        ({"add": ["Drama"], "movies": list(range(1, 5002))}, "movies"),
    ],
)
def test_bad_bulk_changes_are_400_and_change_nothing(movies, clients, body, field):
    answer = clients["labeler"].post("/api/change-sets/", body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content
    assert not ChangeSet.objects.exists() and not Job.objects.exists()


def test_permissions(movies, clients, settings, post_and_run):
    anonymous = clients["anonymous"]
    assert anonymous.get("/api/change-sets/").status_code in (401, 403)
    assert anonymous.post("/api/change-sets/", {"add": ["Drama"], "filter": {}}, format="json").status_code in (
        401,
        403,
    )
    assert anonymous.get("/api/movies/export/csv/").status_code in (401, 403)
    settings.GENREWEB_ANONYMOUS_READ = True  # a viewer: may read and export, not bulk edit or undo
    assert anonymous.get("/api/change-sets/").status_code == 200
    assert anonymous.get("/api/movies/export/csv/").status_code == 200
    assert anonymous.post("/api/change-sets/", {"add": ["Drama"], "filter": {}}, format="json").status_code in (
        401,
        403,
    )
    _, change_set = post_and_run(clients["labeler"], "/api/change-sets/", {"add": ["Drama"], "filter": {}})
    assert anonymous.post(f"/api/change-sets/{change_set['id']}/undo/").status_code in (401, 403)
    assert ChangeSet.objects.count() == 1


def read_stream(answer) -> str:
    assert isinstance(answer, StreamingHttpResponse)  # never built in memory
    return b"".join(answer.streaming_content).decode()


def test_export_csv_has_provenance_and_follows_the_filter(movies, clients, post_and_run):
    api = clients["labeler"]
    _, bulk = post_and_run(api, "/api/change-sets/", {"add": ["Horror"], "movies": [movies[1].pk]})
    answer = api.get("/api/movies/export/csv/", HTTP_ACCEPT="text/html")  # a browser's Accept
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    assert answer["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(read_stream(answer))))
    by_title = {r["title"]: r for r in rows}
    assert len(rows) == 3
    assert by_title["Old Drama"]["genres"] == "Drama" and by_title["Old Drama"]["tmdb_id"] == "11"
    assert (
        by_title["Old Drama"]["label_source"] == "imported"
        and by_title["Old Drama"]["last_change_origin"] == "imported"
    )
    new = by_title["New Drama"]
    assert new["genres"] == "Drama|Horror" and new["label_source"] == "person"
    assert (new["last_changed_by"], new["last_change_set"], new["last_change_origin"]) == (
        "lena",
        str(bulk["id"]),
        "person",
    )
    assert new["reviewed"] == "no"  # the API exports through ml: no person reviewed these labels
    assert "'=HYPERLINK(1)" in by_title  # a formula-looking title cannot run in a spreadsheet

    filtered = list(csv.DictReader(io.StringIO(read_stream(api.get("/api/movies/export/csv/?genre=horror")))))
    assert sorted(r["title"] for r in filtered) == ["'=HYPERLINK(1)", "New Drama"]
    bad = api.get("/api/movies/export/csv/?year_min=soon", HTTP_ACCEPT="text/csv")
    assert bad.status_code == 400 and bad["Content-Type"].startswith("application/json") and "year_min" in bad.json()


def test_export_json(movies, clients, post_and_run):
    api = clients["labeler"]
    post_and_run(api, "/api/change-sets/", {"add": ["Horror"], "movies": [movies[1].pk]})
    answer = api.get("/api/movies/export/json/?genre=drama")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    records = json.loads(read_stream(answer))
    assert [r["title"] for r in records] == ["Old Drama", "New Drama"]  # id order
    new = records[1]
    assert new["genres"] == ["Drama", "Horror"] and new["reviewed"] is False
    assert {(label["genre"], label["source"], label["set_by"]) for label in new["labels"]} == {
        ("Drama", "imported", None),
        ("Horror", "person", "lena"),
    }
    assert new["last_change"]["by"] == "lena" and new["last_change"]["action"] == "added"
    assert records[0]["last_change"]["change_set"] is None
    empty = json.loads(read_stream(api.get("/api/movies/export/json/?genre=horror&year_max=1900")))
    assert empty == []


def test_export_batches_keep_every_movie_once(movies):
    from catalog.export import LabelExport

    for n in range(7):
        make_movie(title=f"Extra {n}", source_id=f"x{n}", genres=["Drama"])
    records = list(LabelExport(Movie.objects.all(), batch_size=3).records())
    assert [r["id"] for r in records] == sorted(Movie.objects.values_list("pk", flat=True))


def test_the_schema_documents_change_sets_and_export(clients):
    schema = clients["labeler"].get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert set(paths["/api/change-sets/"]) >= {"get", "post"}
    undo = paths["/api/change-sets/{id}/undo/"]["post"]
    assert {"202", "401", "403", "404", "409"} <= set(undo["responses"]) and "201" not in undo["responses"]
    create = paths["/api/change-sets/"]["post"]
    assert {"202", "400"} <= set(create["responses"]) and "201" not in create["responses"]
    queued = create["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"job", "job_url", "status", "matched"} <= set(schema["components"]["schemas"][queued]["properties"])
    assert "text/csv" in paths["/api/movies/export/csv/"]["get"]["responses"]["200"]["content"]
    export_params = {p["name"] for p in paths["/api/movies/export/json/"]["get"]["parameters"]}
    assert {"genre", "q", "audit"} <= export_params and "model" not in export_params


def test_a_search_filter_selects_what_the_movie_list_finds(movies, clients, post_and_run):
    api = clients["labeler"]
    listed = {m["id"] for m in api.get("/api/movies/?q=drama&sort=title").json()["results"]}
    assert listed == {movies[0].pk, movies[1].pk}
    _, answer = post_and_run(api, "/api/change-sets/", {"add": ["Horror"], "filter": {"q": "drama"}})
    change_set = ChangeSet.objects.get(pk=answer["id"])
    assert answer["matched"] == 2 and set(change_set.changes.values_list("movie_id", flat=True)) == listed
