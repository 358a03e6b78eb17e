"""Bulk label changes and their undo as bulk_labels jobs: the request creates the change set and
queues the job (and answers before any label is written), the job evaluates the stored
selection (a filter through the catalog page's filter, as stored, when it runs) and runs
catalog.bulk with ml's refresh; every way a job ends (cancelled queued or running, its worker
lost) ends its change set, failed with what it committed, and undoable. The last test runs a
real Celery worker process."""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from catalog.models import ChangeSet, Genre, LabelChange, Movie
from tests.celery_worker import WorkerProcess
from tests.factories import api_client_for, genre_names, make_movie, make_user
from workers import kinds
from workers.jobs import cancel, enqueue, retry
from workers.kinds import InvalidJobParams
from workers.models import Job
from workers.sweep import requeue_stale_jobs

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(drama_catalog):
    return drama_catalog


BULK = {"action": "add", "genre": "comedy", "scope": "filter", "filter": "genre=drama&year_min=2000", "confirmed": "1"}


def test_a_filter_is_evaluated_by_the_job_as_stored_after_the_request_answered(catalog, labeler_client, jobs_at_commit):
    with jobs_at_commit():
        answer = labeler_client.post("/bulk/", BULK)
        change_set, job = ChangeSet.objects.get(), Job.objects.get()
        # The request has answered: the change set and its job are queued, nothing is written.
        assert answer.status_code == 302 and answer["Location"].startswith(f"/changes/{change_set.pk}/")
        assert change_set.status == ChangeSet.Status.QUEUED and job.status == Job.Status.QUEUED
        assert change_set.selection == {"filter": {"genre": "drama", "year_min": "2000"}}
        assert not LabelChange.objects.filter(change_set=change_set).exists()
        # Before the job runs, one movie starts matching the stored filter and one stops.
        late = make_movie(title="Late Drama", source_id="e", genres=["Drama"], year=2021)
        Movie.objects.filter(pk=catalog["newer"].pk).update(year=1999)
        listed = {
            m["id"]
            for m in api_client_for(make_user("pat")).get("/api/movies/?genre=drama&year_min=2000").json()["results"]
        }
    job.refresh_from_db()
    change_set.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log)
    # The job took the filter as stored, when it ran: what the movie list matches then.
    changed = set(LabelChange.objects.filter(change_set=change_set).values_list("movie_id", flat=True))
    assert changed == listed == {catalog["new"].pk, late.pk}
    assert (change_set.status, change_set.matched, change_set.changed) == (ChangeSet.Status.SUCCEEDED, 2, 2)
    assert genre_names(catalog["newer"]) == {"Drama"} and genre_names(late) == {"Drama", "Comedy"}
    assert job.result["change_set_id"] == change_set.pk and job.requested_by.username == "lena"
    assert any("of 2 movies, 2 changed" in line for line in job.log), job.log


def test_the_job_moves_progress_per_batch_and_refreshes_ml_per_batch(catalog, labeler_client, jobs_at_commit):
    from workers.lifecycle import ProgressReporter

    refreshed = []
    unthrottled = ProgressReporter.__init__
    with (
        mock.patch("catalog.bulk.BATCH_SIZE", 1),
        mock.patch("ml.services.review.labels_changed", side_effect=refreshed.append),
        # every progress call written (the reporter writes at most once a second otherwise)
        mock.patch.object(ProgressReporter, "__init__", lambda self, job_id: unthrottled(self, job_id, 0)),
        jobs_at_commit(),
    ):
        labeler_client.post("/bulk/", {**BULK, "filter": "genre=drama"})
    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log)
    assert refreshed == [[catalog["old"].pk], [catalog["new"].pk], [catalog["newer"].pk]]  # after each batch
    steps = [line.split(" ", 1)[1] for line in job.log if " of 3 movies" in line]
    assert steps == [
        "1 of 3 movies, 1 changed (33%)",
        "2 of 3 movies, 2 changed (67%)",
        "3 of 3 movies, 3 changed (99%)",
    ]


def test_the_kind_runs_only_a_queued_change_set(catalog):
    assert kinds.get(kinds.BULK_LABELS).queue == "default"
    with pytest.raises(InvalidJobParams) as bad:
        enqueue(kinds.BULK_LABELS, {})
    assert bad.value.errors == {"change_set": "This field is required."}
    done = ChangeSet.objects.create(kind=ChangeSet.Kind.BULK, add=["Comedy"], status=ChangeSet.Status.SUCCEEDED)
    with pytest.raises(InvalidJobParams) as bad:
        enqueue(kinds.BULK_LABELS, {"change_set": done.pk})
    assert "only a queued one runs" in bad.value.errors["change_set"]


def test_a_job_cancelled_while_queued_ends_its_change_set_failed(catalog, labeler_client, staff):
    with mock.patch("workers.jobs.send_job_message"):  # no worker: it stays queued
        labeler_client.post("/bulk/", BULK)
    change_set, job = ChangeSet.objects.get(), Job.objects.get()
    cancel(job, staff)
    change_set.refresh_from_db()
    assert change_set.status == ChangeSet.Status.FAILED and f"job #{job.pk} cancelled" in change_set.error
    assert genre_names(catalog["new"]) == {"Drama"}
    with pytest.raises(InvalidJobParams):  # a change set runs once: retry is refused
        retry(Job.objects.get(pk=job.pk), staff)


def test_a_job_cancelled_while_it_runs_stops_between_batches_and_can_be_undone(catalog, labeler_client, jobs_at_commit):
    def cancel_after_the_first_batch(movie_ids):
        Job.objects.update(cancel_requested=True)

    with (
        mock.patch("catalog.bulk.BATCH_SIZE", 1),
        mock.patch("ml.services.review.labels_changed", side_effect=cancel_after_the_first_batch),
        jobs_at_commit(),
    ):
        labeler_client.post("/bulk/", {**BULK, "filter": "genre=drama"})
    job, change_set = Job.objects.get(), ChangeSet.objects.get()
    assert job.status == Job.Status.CANCELLED
    assert change_set.status == ChangeSet.Status.FAILED and "cancelled" in change_set.error
    assert (change_set.matched, change_set.changed) == (1, 1) and genre_names(catalog["old"]) == {"Drama", "Comedy"}
    with jobs_at_commit():
        labeler_client.post(f"/changes/{change_set.pk}/undo/")
    undo = ChangeSet.objects.get(undoes=change_set)
    assert undo.status == ChangeSet.Status.SUCCEEDED and undo.changed == 1 and genre_names(catalog["old"]) == {"Drama"}


def test_a_job_whose_worker_was_lost_ends_its_change_set_failed_and_undoable(catalog, labeler_client, settings):
    with mock.patch("workers.jobs.send_job_message"):
        labeler_client.post("/bulk/", BULK)
    change_set, job = ChangeSet.objects.get(), Job.objects.get()
    # A worker took the job, committed one batch (New Drama) and died: no heartbeat since.
    from catalog.labels import write_labels

    past = timezone.now() - timedelta(seconds=settings.GENREWEB_HEARTBEAT_TIMEOUT_S + 5)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, started_at=past, heartbeat_at=past)
    ChangeSet.objects.filter(pk=change_set.pk).update(status=ChangeSet.Status.RUNNING)
    write_labels(catalog["new"], add=[Genre.objects.get(name="Comedy")], change_set=change_set)
    ChangeSet.objects.filter(pk=change_set.pk).update(matched=1, changed=1, labels_added=1)

    report = requeue_stale_jobs()
    assert report.failed_lost_jobs == [job.pk]
    change_set.refresh_from_db()
    assert change_set.status == ChangeSet.Status.FAILED and "worker" in change_set.error and change_set.finished_at
    undo = labeler_client.post(f"/changes/{change_set.pk}/undo/")
    assert undo.status_code == 302  # not "still running": it ended
    assert ChangeSet.objects.get(undoes=change_set).status == ChangeSet.Status.QUEUED


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_api_bulk_change_and_its_undo(tmp_path):
    Genre.objects.create(name="Comedy")
    dramas = [make_movie(title=f"Drama {n}", source_id=f"w{n}", genres=["Drama"], year=2000 + n) for n in range(6)]
    api = api_client_for(make_user("lena"))
    worker = WorkerProcess(tmp_path / "worker", use_redis=True)
    (tmp_path / "worker").mkdir()
    worker.start(timeout=120)

    def finished(change_set_id: int) -> dict:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = api.get(f"/api/change-sets/{change_set_id}/").json()
            if body["status"] not in ("queued", "running"):
                return body
            time.sleep(0.3)
        raise AssertionError(f"change set {change_set_id} did not finish\n{worker.read_log()}")

    try:
        answer = api.post("/api/change-sets/", {"add": ["Comedy"], "filter": {"year_min": "2003"}}, format="json")
        assert answer.status_code == 202 and answer.json()["status"] in ("queued", "running")
        body = finished(answer.json()["id"])
        assert (body["status"], body["matched"], body["changed"]) == ("succeeded", 3, 3), worker.read_log()
        assert [("Comedy" in genre_names(m)) for m in dramas] == [False] * 3 + [True] * 3
        job = Job.objects.get(pk=answer.json()["job"])
        assert job.status == Job.Status.SUCCEEDED and job.log[1].split(" ", 1)[1].startswith("started on test-")

        undo = api.post(f"/api/change-sets/{body['id']}/undo/")
        assert undo.status_code == 202
        assert finished(undo.json()["id"])["changed"] == 3
        assert all(genre_names(m) == {"Drama"} for m in dramas)
    finally:
        worker.stop()
