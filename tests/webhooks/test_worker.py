"""Deliveries sent by a real Celery worker process (Redis, Postgres) to a real receiver on
127.0.0.1: a labels-changed event with a verified signature, a retry after a 500, a bounded
failure, and a delivery recorded while the broker was down that the workers' sweep sends."""

from __future__ import annotations

import time

import pytest

from base import events
from catalog.labels import write_labels
from catalog.models import Genre, LabelOrigin
from tests.celery_worker import WorkerProcess
from tests.factories import make_movie, make_user
from webhooks import signing
from webhooks.models import Delivery, Endpoint

from .conftest import closed_port

pytestmark = [
    pytest.mark.redis,
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

MAX_ATTEMPTS = 3
WORKER_ENV = {
    "GENREWEB_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "GENREWEB_WEBHOOK_RETRY_BASE_S": "0",  # retries at once: the schedule itself is tested in test_delivery
    "GENREWEB_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "GENREWEB_REQUEUE_INTERVAL_S": "1",  # the sweep that sends deliveries the broker never got
}


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        process = WorkerProcess(tmp_path_factory.mktemp("webhook-worker"), use_redis=True, extra_env=WORKER_ENV)
        process.start(timeout=90)
    yield process
    process.stop()


@pytest.fixture
def local(settings):
    settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS = WORKER_ENV["GENREWEB_WEBHOOK_ALLOWED_NETWORKS"]
    settings.GENREWEB_WEBHOOK_MAX_ATTEMPTS = MAX_ATTEMPTS
    return settings


def wait_for(predicate, what: str, worker: WorkerProcess, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{worker.read_log()}")


def finished(delivery_id: int) -> Delivery | None:
    found = Delivery.objects.get(pk=delivery_id)
    return found if found.status != Delivery.Status.PENDING else None


def relabel_heat(user=None):
    movie = make_movie(title="Heat", source_id="1", genres=["Crime"])
    drama, _ = Genre.objects.get_or_create(name="Drama")
    write_labels(movie, add=[drama], origin=LabelOrigin.PERSON, user=user)  # commits: the event goes out
    return movie


def test_a_labels_changed_event_reaches_the_receiver_signed(worker, local, receiver):
    endpoint = Endpoint.objects.create(name="ci", url=receiver.url, events=[events.LABELS_CHANGED])
    movie = relabel_heat(make_user("sam"))
    (sent,) = Delivery.objects.all()
    done = wait_for(lambda: finished(sent.pk), "the delivery to end", worker)
    assert (done.status, done.attempts, done.last_status_code) == ("succeeded", 1, 200)
    (got,) = receiver.received
    assert signing.verify(endpoint.secret, got.body, got.headers["X-Genreweb-Signature"])
    assert got.headers["X-Genreweb-Event"] == "labels.changed"
    assert got.headers["X-Genreweb-Delivery"] == str(done.uid)
    assert done.payload["data"]["movie"] == movie.pk and done.payload["data"]["added"] == ["Drama"]
    assert endpoint.secret not in worker.read_log()


def test_a_receiver_answering_500_is_retried_and_succeeds(worker, local, receiver):
    receiver.codes = [500, 200]
    endpoint = Endpoint.objects.create(name="ci", url=receiver.url, events=[events.LABELS_CHANGED])
    relabel_heat()
    (sent,) = Delivery.objects.all()
    done = wait_for(lambda: finished(sent.pk), "the delivery to end", worker)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == ("succeeded", 2, 200, "")
    assert len(receiver.received) == 2
    assert all(signing.verify(endpoint.secret, r.body, r.headers["X-Genreweb-Signature"]) for r in receiver.received)
    assert receiver.received[0].headers["X-Genreweb-Delivery"] == receiver.received[1].headers["X-Genreweb-Delivery"]


def test_an_unreachable_endpoint_ends_failed_after_the_bounded_attempts(worker, local):
    Endpoint.objects.create(name="gone", url=f"http://127.0.0.1:{closed_port()}/", events=[events.LABELS_CHANGED])
    relabel_heat()
    (sent,) = Delivery.objects.all()
    done = wait_for(lambda: finished(sent.pk), "the delivery to end", worker)
    assert (done.status, done.attempts, done.last_status_code) == ("failed", MAX_ATTEMPTS, None)
    assert "ConnectError" in done.last_error


def test_a_delivery_recorded_while_the_broker_was_down_is_sent_by_the_sweep(worker, local, receiver, monkeypatch):
    from workers import broker

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    endpoint = Endpoint.objects.create(name="ci", url=receiver.url, events=[events.LABELS_CHANGED])
    with monkeypatch.context() as patched:
        patched.setattr(broker, "publish", down)
        relabel_heat()
    (sent,) = Delivery.objects.all()  # recorded; its only message can come from the sweep
    done = wait_for(lambda: finished(sent.pk), "the sweep to send the delivery", worker)
    assert (done.status, done.attempts) == ("succeeded", 1)
    (got,) = receiver.received
    assert signing.verify(endpoint.secret, got.body, got.headers["X-Genreweb-Signature"])
