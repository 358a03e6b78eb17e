"""Who may register webhooks (staff only), the secret shown once, the delivery log and redeliver,
through the API, the pages and the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.test import Client

from base import events
from tests.factories import api_client_for
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    from webhooks import delivery

    sent = []
    monkeypatch.setattr(delivery, "publish", lambda pk, countdown=None, **kw: sent.append(pk) or True)
    return sent


def body(url="http://127.0.0.1:8765/hook", **fields):
    return {"name": "ci", "url": url, "events": [events.LABELS_CHANGED, events.JOB_FINISHED], **fields}


def test_only_staff_may_register_or_see_webhooks(loopback_allowed, labeler, staff):
    endpoint = Endpoint.objects.create(name="x", url="http://127.0.0.1:1/", events=[events.JOB_FINISHED])
    labeler_api = api_client_for(labeler)
    assert labeler_api.post("/api/webhooks/", body(), format="json").status_code == 403
    assert labeler_api.get("/api/webhooks/").status_code == 403
    assert labeler_api.get("/api/webhook-deliveries/").status_code == 403
    assert labeler_api.post(f"/api/webhooks/{endpoint.pk}/rotate-secret/").status_code == 403
    assert api_client_for(None).get("/api/webhooks/").status_code == 401
    client = Client()
    client.force_login(labeler)
    assert client.get("/webhooks/").status_code == 403
    assert (
        client.post("/webhooks/", {"name": "x", "url": "http://127.0.0.1:1/", "events": ["job.finished"]}).status_code
        == 403
    )
    assert client.post(f"/webhooks/{endpoint.pk}/rotate-secret/").status_code == 403
    assert Client().get("/webhooks/").status_code == 302  # to the login page
    assert Endpoint.objects.count() == 1
    assert Endpoint.objects.get().secret == endpoint.secret


def test_staff_register_through_the_api_and_see_the_secret_only_once(loopback_allowed, staff):
    api = api_client_for(staff)
    created = api.post("/api/webhooks/", body(), format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    endpoint = Endpoint.objects.get()
    assert data["secret"] == endpoint.secret and endpoint.secret.startswith("whsec_")
    assert "no-store" in created["Cache-Control"]
    assert data["events"] == ["job.finished", "labels.changed"] and data["created_by"] == "sam"
    for response in (api.get("/api/webhooks/"), api.get(f"/api/webhooks/{endpoint.pk}/")):
        assert response.status_code == 200 and endpoint.secret not in response.content.decode()
    changed = api.patch(f"/api/webhooks/{endpoint.pk}/", {"active": False, "secret": "mine"}, format="json")
    assert changed.status_code == 200 and "secret" not in changed.json()
    endpoint.refresh_from_db()
    assert not endpoint.active and endpoint.secret == data["secret"]  # the secret is never set by a client

    rotated = api.post(f"/api/webhooks/{endpoint.pk}/rotate-secret/")
    endpoint.refresh_from_db()
    assert rotated.status_code == 200 and rotated.json()["secret"] == endpoint.secret != data["secret"]


@pytest.mark.parametrize(
    "url, field",
    [
        ("ftp://127.0.0.1/x", "url"),
        ("http://169.254.169.254/latest/meta-data/", "url"),
        ("http://10.0.0.5/hook", "url"),
        ("http://user:pw@127.0.0.1/", "url"),
        ("not a url", "url"),
    ],
)
def test_the_api_refuses_urls_outside_the_policy(loopback_allowed, staff, url, field):
    response = api_client_for(staff).post("/api/webhooks/", body(url=url), format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Endpoint.objects.exists()


def test_the_api_refuses_unknown_or_no_events(loopback_allowed, staff):
    api = api_client_for(staff)
    assert "events" in api.post("/api/webhooks/", body(events=["labels.chnaged"]), format="json").json()
    assert "events" in api.post("/api/webhooks/", body(events=[]), format="json").json()
    assert not Endpoint.objects.exists()


def test_loopback_needs_the_setting(settings, staff):
    settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS = ""
    response = api_client_for(staff).post("/api/webhooks/", body(), format="json")
    assert response.status_code == 400 and "GENREWEB_WEBHOOK_ALLOWED_NETWORKS" in response.json()["url"][0]


def test_the_pages_register_show_the_secret_once_and_log_deliveries(
    loopback_allowed, staff, published, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(staff)
    form = {"name": "ci", "url": "http://127.0.0.1:8765/hook", "events": ["labels.changed"], "active": "on"}
    shown = client.post("/webhooks/", form)
    endpoint = Endpoint.objects.get()
    assert shown.status_code == 200 and endpoint.secret in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert endpoint.created_by == staff and endpoint.events == ["labels.changed"]
    assert endpoint.secret not in client.get("/webhooks/").content.decode()
    page = client.get(f"/webhooks/{endpoint.pk}/")
    assert page.status_code == 200 and endpoint.secret not in page.content.decode()
    assert "No deliveries yet" in page.content.decode()

    bad = client.post("/webhooks/", {**form, "url": "http://169.254.169.254/"})
    assert bad.status_code == 200 and "link-local" in bad.content.decode() and Endpoint.objects.count() == 1

    first = Delivery.objects.create(
        endpoint=endpoint,
        event="labels.changed",
        event_id="6f1c7d2e-0000-4000-8000-000000000001",
        payload={"id": "6f1c7d2e-0000-4000-8000-000000000001", "event": "labels.changed", "data": {"title": "Heat"}},
        status=Delivery.Status.FAILED,
        attempts=5,
        last_status_code=500,
        last_error="HTTP 500",
    )
    log = client.get(f"/webhooks/{endpoint.pk}/?status=failed").content.decode()
    assert "HTTP 500" in log and "&quot;Heat&quot;" in log and "Failed" in log

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/webhooks/deliveries/{first.pk}/redeliver/").status_code == 302
    again = Delivery.objects.exclude(pk=first.pk).get()
    assert (again.redelivery_of, str(again.event_id), again.payload, again.status) == (
        first,
        first.event_id,
        first.payload,
        "pending",
    )
    assert again.uid != first.uid and again.requested_by == staff and published == [again.pk]

    rotated = client.post(f"/webhooks/{endpoint.pk}/rotate-secret/")
    old = endpoint.secret
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in rotated.content.decode()


def test_the_delivery_api_lists_filters_and_redelivers(
    loopback_allowed, staff, published, django_capture_on_commit_callbacks
):
    endpoint = Endpoint.objects.create(name="x", url="http://127.0.0.1:1/", events=[events.JOB_FINISHED])
    other = Endpoint.objects.create(name="y", url="http://127.0.0.1:2/", events=[events.JOB_FINISHED])
    made = [
        Delivery.objects.create(
            endpoint=e, event="job.finished", event_id="6f1c7d2e-0000-4000-8000-000000000002", payload={"n": i}
        )
        for i, e in enumerate((endpoint, other))
    ]
    api = api_client_for(staff)
    listed = api.get(f"/api/webhook-deliveries/?endpoint={endpoint.pk}").json()
    assert [d["id"] for d in listed["results"]] == [made[0].pk]
    assert listed["results"][0]["payload"] == {"n": 0} and "secret" not in str(listed)
    for bad in ("status=done", "endpoint=abc", "endpoint=99999999999999999999", "event=nope"):
        assert api.get(f"/api/webhook-deliveries/?{bad}").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"/api/webhook-deliveries/{made[0].pk}/redeliver/")
    assert again.status_code == 201 and again.json()["redelivery_of"] == made[0].pk
    assert published == [again.json()["id"]]
    other.active = False
    other.save()
    assert api.post(f"/api/webhook-deliveries/{made[1].pk}/redeliver/").status_code == 409


def test_the_openapi_schema_documents_the_webhook_api(staff):
    schema = api_client_for(staff).get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert {"/api/webhooks/", "/api/webhooks/{id}/rotate-secret/", "/api/webhook-deliveries/{id}/redeliver/"} <= set(
        paths
    )
    created = paths["/api/webhooks/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert "secret" in schema["components"]["schemas"][created.rsplit("/", 1)[1]]["properties"]
    listed = schema["components"]["schemas"]["Endpoint"]["properties"]
    assert "secret" not in listed
    items = listed["events"]["items"]
    if "$ref" in items:
        items = schema["components"]["schemas"][items["$ref"].rsplit("/", 1)[1]]
    assert items["enum"] == list(events.EVENTS)


def test_a_new_event_type_is_one_entry_and_one_emit_call(
    loopback_allowed, staff, published, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setitem(events.EVENTS, "snapshot.made", events.EventType("snapshot.made", "Snapshot made", "..."))
    api = api_client_for(staff)
    created = api.post("/api/webhooks/", body(events=["snapshot.made"]), format="json")
    assert created.status_code == 201, created.json()
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("snapshot.made", {"snapshot": 4})
    (sent,) = Delivery.objects.all()
    assert sent.event == "snapshot.made" and sent.payload["data"] == {"snapshot": 4} and published == [sent.pk]


def test_the_admin_lists_endpoints_without_their_secret(loopback_allowed, db):
    from tests.factories import make_user

    admin = make_user("root", staff=True, is_superuser=True)
    endpoint = Endpoint.objects.create(name="x", url="http://127.0.0.1:1/", events=[events.JOB_FINISHED])
    client = Client()
    client.force_login(admin)
    for url in ("/admin/webhooks/endpoint/", f"/admin/webhooks/endpoint/{endpoint.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200 and endpoint.secret not in page.content.decode()
    added = client.post(
        "/admin/webhooks/endpoint/add/",
        {"name": "y", "url": "http://169.254.169.254/", "events": ["job.finished"], "active": "on"},
    )
    assert added.status_code == 200 and "link-local" in added.content.decode()  # refused, form shown again
    assert Endpoint.objects.count() == 1


def test_a_ping_goes_to_one_endpoint_on_request(
    loopback_allowed, staff, labeler, published, django_capture_on_commit_callbacks
):
    endpoint = Endpoint.objects.create(name="x", url="http://127.0.0.1:1/", events=[events.JOB_FINISHED])
    assert api_client_for(labeler).post(f"/api/webhooks/{endpoint.pk}/ping/").status_code == 403
    api = api_client_for(staff)
    with django_capture_on_commit_callbacks(execute=True):
        sent = api.post(f"/api/webhooks/{endpoint.pk}/ping/")
    assert sent.status_code == 201
    ping = Delivery.objects.get()
    assert sent.json()["event"] == "ping" == ping.payload["event"] and ping.payload["data"]["endpoint"] == endpoint.pk
    assert published == [ping.pk]
    assert api.get("/api/webhook-deliveries/?event=ping").json()["count"] == 1
    client = Client()
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/webhooks/{endpoint.pk}/ping/").status_code == 302
    assert Delivery.objects.filter(event="ping").count() == 2 and len(published) == 2
    Endpoint.objects.filter(pk=endpoint.pk).update(active=False)
    assert api.post(f"/api/webhooks/{endpoint.pk}/ping/").status_code == 409
