"""Events become deliveries; one attempt against a real local receiver; retries, backoff,
address policy, and the broker being down at enqueue. The task's message is captured here
(tests/webhooks/test_worker.py sends them through a real worker)."""

from __future__ import annotations

import json
import logging

import pytest
from django.utils import timezone

from base import events
from catalog.bulk import apply_bulk
from catalog.labels import write_labels
from catalog.models import Genre, LabelOrigin, Movie
from tests.factories import make_movie
from webhooks import delivery, signing, targets
from webhooks.models import Delivery, Endpoint

from .conftest import closed_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    """Messages the service would send to the broker: [(delivery_id, countdown)]."""
    sent: list[tuple[int, float | None]] = []
    monkeypatch.setattr(delivery, "publish", lambda pk, countdown=None, **kw: sent.append((pk, countdown)) or True)
    return sent


def endpoint_for(url: str, events_=(events.LABELS_CHANGED,), **fields) -> Endpoint:
    return Endpoint.objects.create(name="hook", url=url, events=list(events_), **fields)


def relabel(movie, user=None, origin=LabelOrigin.PERSON):
    genre, _ = Genre.objects.get_or_create(name="Drama")
    return write_labels(movie, add=[genre], origin=origin, user=user, reason="it is a drama")


def test_retry_schedule_is_exponential_and_bounded(settings):
    settings.GENREWEB_WEBHOOK_RETRY_BASE_S = 30
    settings.GENREWEB_WEBHOOK_MAX_ATTEMPTS = 5
    assert delivery.retry_schedule() == [30, 120, 480, 1920]
    assert [delivery.backoff_s(n) for n in (1, 2, 3, 4)] == [30, 120, 480, 1920]
    settings.GENREWEB_WEBHOOK_MAX_ATTEMPTS = 1
    assert delivery.retry_schedule() == []


def test_a_persons_label_change_becomes_one_delivery_per_subscribed_active_endpoint(
    loopback_allowed, published, django_capture_on_commit_callbacks, staff
):
    wanted = endpoint_for("http://127.0.0.1:9/a")
    endpoint_for("http://127.0.0.1:9/b", events_=[events.JOB_FINISHED])  # not subscribed
    endpoint_for("http://127.0.0.1:9/c", active=False)
    movie = make_movie(title="Heat", source_id="1", genres=["Crime"])  # an import: no event
    assert not Delivery.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        relabel(movie, user=staff)
    (sent,) = Delivery.objects.all()
    assert sent.endpoint == wanted and sent.status == Delivery.Status.PENDING and sent.attempts == 0
    assert published == [(sent.pk, None)]
    assert sent.payload["event"] == "labels.changed" and str(sent.event_id) == sent.payload["id"]
    assert sent.payload["data"] == {
        "movie": movie.pk,
        "title": "Heat",
        "label_version": 2,
        "added": ["Drama"],
        "removed": [],
        "genres": ["Crime", "Drama"],
        "origin": "person",
        "user": "sam",
        "reason": "it is a drama",
    }


def test_a_bulk_change_raises_one_bulk_event_not_one_per_movie(
    loopback_allowed, published, django_capture_on_commit_callbacks, staff
):
    per_movie = endpoint_for("http://127.0.0.1:9/a")
    bulk = endpoint_for("http://127.0.0.1:9/b", events_=[events.LABELS_BULK_CHANGED])
    movies = [make_movie(title=f"Film {i}", source_id=str(i), genres=["Crime"]) for i in range(3)]
    drama, _ = Genre.objects.get_or_create(name="Drama")

    with django_capture_on_commit_callbacks(execute=True):
        change_set = apply_bulk(Movie.objects.filter(pk__in=[m.pk for m in movies]), add=[drama], user=staff)
    assert not Delivery.objects.filter(endpoint=per_movie).exists()
    (sent,) = Delivery.objects.filter(endpoint=bulk)
    data = sent.payload["data"]
    assert sent.payload["event"] == "labels.bulk_changed"
    assert data["change_set"] == change_set.pk and data["kind"] == "bulk" and data["status"] == "succeeded"
    assert (data["changed"], data["add"], data["user"]) == (3, ["Drama"], "sam")


def test_imports_and_rolled_back_changes_raise_no_event(
    loopback_allowed, published, django_capture_on_commit_callbacks
):
    from django.db import transaction

    endpoint_for("http://127.0.0.1:9/a")
    movie = make_movie(title="Heat", source_id="1")
    with django_capture_on_commit_callbacks(execute=True):
        relabel(movie, origin=LabelOrigin.IMPORTED)
        with pytest.raises(RuntimeError), transaction.atomic():
            relabel(movie)
            raise RuntimeError("rolled back")
    assert not Delivery.objects.exists() and published == []


def test_job_finished_and_model_promoted_are_raised(
    loopback_allowed, published, django_capture_on_commit_callbacks, staff
):
    from unittest import mock

    from ml.models import DatasetSnapshot, ModelVersion
    from ml.services.registry import promote
    from workers.jobs import enqueue
    from workers.lifecycle import finish_job
    from workers.models import Job

    endpoint_for("http://127.0.0.1:9/a", events_=[events.JOB_FINISHED, events.MODEL_PROMOTED])
    with mock.patch("workers.jobs.send_job_message"):
        job = enqueue("preprocess", {})
    with django_capture_on_commit_callbacks(execute=True):
        assert finish_job(job.pk, Job.Status.FAILED, error="disk full\nmore")
    (finished,) = Delivery.objects.filter(event=events.JOB_FINISHED)
    assert finished.payload["data"] | {"finished_at": None} == {
        "job": job.pk,
        "kind": "preprocess",
        "status": "failed",
        "step": "failed",
        "error": "disk full",
        "parent": None,
        "requested_by": None,
        "finished_at": None,
    }

    snapshot = DatasetSnapshot.objects.create(name="s", genres=["Drama"], content_hash="0" * 64, n_members=1)
    first, second = (
        ModelVersion.objects.create(
            name=f"v{i}",
            snapshot=snapshot,
            genres=["Drama"],
            thresholds=[0.5],
            artifact_path=f"m/{i}",
            checksum="c" * 64,
        )
        for i in (1, 2)
    )
    with django_capture_on_commit_callbacks(execute=True):
        promote(first.pk)
        promote(second.pk, user=staff)
    promoted = [d.payload["data"] for d in Delivery.objects.filter(event=events.MODEL_PROMOTED).order_by("pk")]
    assert promoted == [
        {
            "alias": "production",
            "model_version": first.pk,
            "model_version_name": "v1",
            "previous_model_version": None,
            "user": None,
        },
        {
            "alias": "production",
            "model_version": second.pk,
            "model_version_name": "v2",
            "previous_model_version": first.pk,
            "user": "sam",
        },
    ]


def test_review_finished_is_one_call_for_the_review_record(
    loopback_allowed, published, django_capture_on_commit_callbacks
):
    endpoint_for("http://127.0.0.1:9/a", events_=[events.REVIEW_FINISHED])
    with django_capture_on_commit_callbacks(execute=True):
        events.review_finished(review_id=7, movie_id=3, outcome="labels_right", genres=["Drama"])
    (sent,) = Delivery.objects.all()
    assert sent.payload["data"] == {
        "review": 7,
        "movie": 3,
        "outcome": "labels_right",
        "user": None,
        "genres": ["Drama"],
    }


def test_unknown_events_are_refused():
    with pytest.raises(events.UnknownEvent):
        events.emit("labels.chnaged", {})


def pending_delivery(endpoint: Endpoint, payload: dict | None = None) -> Delivery:
    payload = payload or {"id": "e", "event": events.LABELS_CHANGED, "data": {"movie": 1}}
    return Delivery.objects.create(
        endpoint=endpoint,
        event=events.LABELS_CHANGED,
        event_id="6f1c7d2e-0000-4000-8000-000000000001",
        payload=payload,
        next_attempt_at=timezone.now(),
    )


def test_an_attempt_posts_the_signed_body_to_the_receiver(loopback_allowed, receiver, published, caplog):
    endpoint = endpoint_for(receiver.url)
    sent = pending_delivery(endpoint, {"id": "e", "event": "labels.changed", "data": {"title": "Amélie"}})
    with caplog.at_level(logging.DEBUG):
        assert delivery.attempt(sent.pk) == Delivery.Status.SUCCEEDED
    (got,) = receiver.received
    assert got.path == "/hook?source=genreweb"
    assert json.loads(got.body) == sent.payload
    assert got.headers["X-Genreweb-Event"] == "labels.changed"
    assert got.headers["X-Genreweb-Delivery"] == str(sent.uid)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Host"] == receiver.url.split("/")[2]
    assert signing.verify(endpoint.secret, got.body, got.headers["X-Genreweb-Signature"])
    sent.refresh_from_db()
    assert (sent.status, sent.attempts, sent.last_status_code, sent.last_response) == ("succeeded", 1, 200, "ok")
    assert sent.finished_at and sent.next_attempt_at is None
    assert endpoint.secret not in caplog.text
    assert published == []  # no retry
    assert delivery.attempt(sent.pk) is None  # a duplicate message does nothing
    assert len(receiver.received) == 1


def test_a_failing_receiver_is_retried_after_the_backoff_then_succeeds(loopback_allowed, receiver, published, settings):
    settings.GENREWEB_WEBHOOK_RETRY_BASE_S = 30
    receiver.codes = [500, 200]
    receiver.body = b"x" * 10_000
    sent = pending_delivery(endpoint_for(receiver.url))
    before = timezone.now()

    assert delivery.attempt(sent.pk) == Delivery.Status.PENDING
    sent.refresh_from_db()
    assert (sent.attempts, sent.last_status_code, sent.last_error) == (1, 500, "HTTP 500")
    assert len(sent.last_response) <= delivery.RESPONSE_LOG_BYTES
    assert sent.next_attempt_at >= before + timezone.timedelta(seconds=30)
    assert published == [(sent.pk, 30)]
    assert delivery.attempt(sent.pk) is None  # not due yet: the countdown message will come
    assert delivery.send_due() == []

    Delivery.objects.filter(pk=sent.pk).update(next_attempt_at=timezone.now())  # the wait passed
    assert delivery.attempt(sent.pk) == Delivery.Status.SUCCEEDED
    sent.refresh_from_db()
    assert (sent.status, sent.attempts, sent.last_status_code, sent.last_error) == ("succeeded", 2, 200, "")
    assert len(receiver.received) == 2


def test_an_unreachable_endpoint_fails_after_the_bounded_attempts(loopback_allowed, published, settings):
    settings.GENREWEB_WEBHOOK_RETRY_BASE_S = 0
    settings.GENREWEB_WEBHOOK_MAX_ATTEMPTS = 3
    sent = pending_delivery(endpoint_for(f"http://127.0.0.1:{closed_port()}/"))
    statuses = [delivery.attempt(sent.pk) for _ in range(4)]
    assert statuses == ["pending", "pending", "failed", None]
    sent.refresh_from_db()
    assert sent.status == "failed" and sent.attempts == 3 and sent.last_status_code is None
    assert "ConnectError" in sent.last_error
    assert [pk for pk, _ in published] == [sent.pk, sent.pk]  # two retries scheduled, then no more


def test_redirects_are_not_followed(loopback_allowed, receiver, published):
    receiver.codes = [302]
    receiver.headers = {"Location": "http://169.254.169.254/latest/meta-data/"}
    sent = pending_delivery(endpoint_for(receiver.url))
    assert delivery.attempt(sent.pk) == Delivery.Status.PENDING
    sent.refresh_from_db()
    assert sent.last_status_code == 302 and "not followed" in sent.last_response
    assert len(receiver.received) == 1


def test_a_delivery_survives_the_broker_being_down_and_the_sweep_sends_it(
    loopback_allowed, monkeypatch, django_capture_on_commit_callbacks
):
    from workers import broker, sweep

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    tries = []
    monkeypatch.setattr(broker, "publish", lambda *args, **kwargs: tries.append(args) or down())
    endpoint_for("http://127.0.0.1:9/a")
    endpoint_for("http://127.0.0.1:9/b")
    with django_capture_on_commit_callbacks(execute=True):
        relabel(make_movie(title="Heat", source_id="1"))
        relabel(make_movie(title="Ran", source_id="2"))
    made = list(Delivery.objects.order_by("pk"))
    assert len(made) == 4 and all(d.status == "pending" and d.attempts == 0 for d in made)  # recorded, not sent
    assert len(tries) == 1  # after one refusal, later events do not wait for the broker each

    resent = []
    monkeypatch.setattr(broker, "publish", lambda task, args, **kw: resent.append((task.name, args)))
    assert "webhook deliveries" in sweep.EXTRA_SWEEPS
    sweep.run_extra_sweeps()  # the sweep tries at once, and sends them all
    assert resent == [("webhooks.deliver", [d.pk]) for d in made]


def test_the_address_policy(settings):
    settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS = ""
    for url, why in [
        ("ftp://example.org/x", "only http"),
        ("http://user:pw@127.0.0.1/", "user name or password"),
        ("http:///nohost", "no host"),
        ("http://127.0.0.1:8000/", "not a public address"),
        ("http://10.1.2.3/", "not a public address"),
        ("http://[::1]/", "not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://0.0.0.0/", "not a public address"),
    ]:
        with pytest.raises(targets.UnsafeURL, match=why):
            targets.resolve(url)
    assert targets.resolve("https://93.184.215.14/hook").address == "93.184.215.14"
    settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.1/32, 169.254.0.0/16"
    assert targets.resolve("http://127.0.0.1:8000/").port == 8000
    with pytest.raises(targets.UnsafeURL, match="link-local"):  # never, whatever the setting says
        targets.resolve("http://169.254.169.254/")


def test_a_url_refused_at_delivery_time_fails_at_once(loopback_allowed, receiver, published, settings):
    sent = pending_delivery(endpoint_for(receiver.url))
    settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS = ""  # the operator withdrew the permission
    assert delivery.attempt(sent.pk) == Delivery.Status.FAILED
    sent.refresh_from_db()
    assert sent.last_error.startswith("refused:") and receiver.received == [] and published == []


def fake_dns(monkeypatch, names: dict[str, str]):
    """Resolve the given names to the given addresses (no DNS server in tests)."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(targets.socket, "getaddrinfo", getaddrinfo)


def test_the_request_goes_to_the_checked_address_with_the_name_as_host(
    loopback_allowed, receiver, published, monkeypatch
):
    port = receiver.url.split(":")[2].split("/")[0]
    fake_dns(monkeypatch, {"hooks.example.test": "127.0.0.1"})
    sent = pending_delivery(endpoint_for(f"http://hooks.example.test:{port}/in"))
    assert delivery.attempt(sent.pk) == Delivery.Status.SUCCEEDED
    (got,) = receiver.received
    assert got.headers["Host"] == f"hooks.example.test:{port}" and got.path == "/in"


def test_a_name_that_now_resolves_to_a_metadata_address_is_refused(loopback_allowed, receiver, published, monkeypatch):
    port = receiver.url.split(":")[2].split("/")[0]
    fake_dns(monkeypatch, {"hooks.example.test": "127.0.0.1"})
    endpoint = endpoint_for(f"http://hooks.example.test:{port}/in")
    targets.resolve(endpoint.url)  # allowed when saved
    fake_dns(monkeypatch, {"hooks.example.test": "169.254.169.254"})  # then the name moved
    sent = pending_delivery(endpoint)
    assert delivery.attempt(sent.pk) == Delivery.Status.FAILED
    sent.refresh_from_db()
    assert "link-local" in sent.last_error and receiver.received == []


def test_finished_deliveries_past_the_retention_are_pruned_and_pending_ones_never(settings):
    settings.GENREWEB_WEBHOOK_RETENTION_DAYS = 30
    endpoint = endpoint_for("https://example.org/hook")
    old = timezone.now() - timezone.timedelta(days=31)
    recent = timezone.now() - timezone.timedelta(days=29)
    rows = {}
    for name, status, finished in [
        ("old_ok", Delivery.Status.SUCCEEDED, old),
        ("old_failed", Delivery.Status.FAILED, old),
        ("recent_ok", Delivery.Status.SUCCEEDED, recent),
        ("old_pending", Delivery.Status.PENDING, None),
    ]:
        rows[name] = pending_delivery(endpoint)
        Delivery.objects.filter(pk=rows[name].pk).update(status=status, finished_at=finished, created_at=old)

    assert delivery.prune_finished() == 2
    assert set(Delivery.objects.values_list("pk", flat=True)) == {rows["recent_ok"].pk, rows["old_pending"].pk}

    settings.GENREWEB_WEBHOOK_RETENTION_DAYS = 0  # keep everything
    Delivery.objects.filter(pk=rows["recent_ok"].pk).update(finished_at=old)
    assert delivery.prune_finished() == 0
    assert Delivery.objects.count() == 2


def test_the_retention_prune_runs_on_the_workers_sweep():
    from workers.sweep import EXTRA_SWEEPS

    assert EXTRA_SWEEPS["webhook delivery retention"] is delivery.prune_finished
