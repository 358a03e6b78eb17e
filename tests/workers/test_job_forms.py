"""The queue-job form is built from the kinds' parameter schemas (base.params): every option of
every kind is a field with its default and help, the values it sends are what the services take,
and the errors come from the same schema as the API's, next to their fields."""

from __future__ import annotations

import inspect

import pytest
from django.urls import reverse
from django.utils.html import escape

from catalog.importers import registry
from catalog.preprocessing import GRAYSCALE_POLICIES, PREPROCESS_PARAMS, preprocess_posters
from ml.services.params import SNAPSHOT_PARAMS
from ml.services.snapshots import build_snapshot
from tests.factories import make_user
from workers import kinds
from workers.forms import QueueJobForm
from workers.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(make_user("sam", staff=True))
    return client


@pytest.fixture
def sent(monkeypatch):
    messages = []
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: messages.append(args))
    return messages


def _schema_paths(kind: str) -> set[str]:
    paths = set()
    for param in kinds.get(kind).schema().fields():
        if param.type == "object":
            paths |= {f"{param.name}.{option.name}" for option in param.schema.fields()}
        else:
            paths.add(param.name)
    return paths


def test_every_declared_option_of_every_kind_is_a_field_of_the_form():
    form = QueueJobForm()
    for name in kinds.KINDS:
        fields = {f.split("-", 1)[1] for f in form.fields if f.startswith(f"{name}-")}
        assert fields == _schema_paths(name), name
    assert _schema_paths("preprocess") == {"grayscale_policy", "min_year", "max_year", "dedupe", "force", "movie_ids"}
    assert _schema_paths("snapshot") == {"name", "seed", "fractions", "min_genre_count", "keep_rare_genres"}
    assert {"snapshot.seed", "snapshot.fractions", "shard_size", "config"} <= _schema_paths("retrain")
    # The import form has every command option of every source, shown for the sources that take it.
    for entry in registry.importers():
        for argument in entry.arguments:
            assert f"import-{argument.dest}" in form.fields
            assert any(p.name == argument.dest and entry.kind in p.when[1] for p in registry.job_params() if p.when)


def test_the_prefilled_defaults_are_the_services_defaults(settings):
    settings.GENREWEB_GRAYSCALE_POLICY = "keep"
    form = QueueJobForm()
    service = inspect.signature(build_snapshot).parameters
    assert form["snapshot-seed"].value() == service["seed"].default == 0  # the benchmark split (ml.engine.split)
    assert form["snapshot-fractions"].value() == " ".join(map(str, service["fractions"].default)) == "0.7 0.15 0.15"
    assert form["snapshot-min_genre_count"].value() == service["min_genre_count"].default == 20
    assert form["retrain-snapshot.seed"].value() == 0
    preprocess = inspect.signature(preprocess_posters).parameters
    assert form["preprocess-dedupe"].value() is preprocess["dedupe"].default is True
    assert form["preprocess-force"].value() is preprocess["force"].default is False
    assert form["preprocess-grayscale_policy"].value() == "keep"  # the setting, which the service uses too
    offered = [value for value, _ in form.fields["preprocess-grayscale_policy"].choices if value]
    assert offered == list(GRAYSCALE_POLICIES)
    assert form.fields["snapshot-seed"].help_text  # every field explains itself
    assert all(p.help for p in PREPROCESS_PARAMS.fields()) and all(p.help for p in SNAPSHOT_PARAMS.fields())


def test_preprocess_and_snapshot_options_reach_the_job(staff_client, sent):
    staff_client.post(
        reverse("workers:jobs"),
        {
            "kind": "preprocess",
            "preprocess-grayscale_policy": "exclude",
            "preprocess-min_year": "1990",
            "preprocess-max_year": "2010",
            "preprocess-force": "on",  # dedupe left unticked
            "preprocess-movie_ids": "",
            "snapshot-seed": "not used: another kind",
        },
    )
    staff_client.post(
        reverse("workers:jobs"),
        {
            "kind": "snapshot",
            "snapshot-seed": "7",
            "snapshot-fractions": "0.8 0.1 0.1",
            "snapshot-min_genre_count": "3",
            "snapshot-keep_rare_genres": "on",
        },
    )
    preprocess, snapshot = Job.objects.order_by("pk")
    assert preprocess.params == {
        "grayscale_policy": "exclude",
        "min_year": 1990,
        "max_year": 2010,
        "dedupe": False,
        "force": True,
    }
    assert snapshot.params == {
        "seed": 7,
        "fractions": [0.8, 0.1, 0.1],
        "min_genre_count": 3,
        "keep_rare_genres": True,
    }
    # What the job stored is what the service takes.
    inspect.signature(preprocess_posters).bind(**preprocess.params)
    inspect.signature(build_snapshot).bind(**snapshot.params)


def test_retrain_takes_the_snapshot_options_nested(staff_client, sent):
    staff_client.post(
        reverse("workers:jobs"),
        {
            "kind": "retrain",
            "retrain-config": "tfidf-linear",
            "retrain-snapshot.seed": "5",
            "retrain-snapshot.fractions": "0.6 0.2 0.2",
            "retrain-shard_size": "256",
        },
    )
    assert Job.objects.get().params == {
        "config": "tfidf-linear",
        "snapshot": {"seed": 5, "fractions": [0.6, 0.2, 0.2], "keep_rare_genres": False},
        "shard_size": 256,
    }


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"kind": "snapshot", "snapshot-fractions": "0.5 0.5"}, "snapshot-fractions", "Must be 3 numbers, got 2."),
        (
            {"kind": "snapshot", "snapshot-fractions": "0.5 0.3 0.3"},
            "snapshot-fractions",
            "Must add up to 1 (train + validation + test), got 1.1.",
        ),
        ({"kind": "snapshot", "snapshot-seed": "-1"}, "snapshot-seed", "Must be at least 0."),
        ({"kind": "preprocess", "preprocess-min_year": "1700"}, "preprocess-min_year", "Must be at least 1870."),
        (
            {"kind": "preprocess", "preprocess-min_year": "2001", "preprocess-max_year": "1999"},
            "preprocess-min_year",
            "Must not be after max_year.",
        ),
        (
            {"kind": "preprocess", "preprocess-movie_ids": "3, x"},
            "preprocess-movie_ids",
            "Must be a list of integer ids.",
        ),
        (
            {"kind": "retrain", "retrain-config": "tfidf-linear", "retrain-snapshot.seed": "x"},
            "retrain-snapshot.seed",
            "Must be a whole number, got 'x'.",
        ),
        (
            {"kind": "import", "import-source": "csv"},
            "import-path",
            "a csv import needs the path of its file or folder",
        ),
    ],
)
def test_a_bad_value_is_an_error_next_to_its_field_and_the_api_says_the_same(staff_client, sent, data, field, message):
    response = staff_client.post(reverse("workers:jobs"), data)
    assert response.status_code == 200 and not Job.objects.exists()
    form = response.context["form"]
    assert form.errors == {field: [message]}
    html = response.content.decode()
    assert f'<span class="error" id="id_{field}-error">{escape(message)}</span>' in html
    assert f'<fieldset class="kind-fields" data-kind="{data["kind"]}"' in html
    # The API validates with the same schema: the same message under the parameter's name.
    kind = data["kind"]
    again = QueueJobForm(data)
    assert again.is_valid()
    params = again.params()
    api = staff_client.post("/api/jobs/", {"kind": kind, "params": params}, content_type="application/json")
    assert api.status_code == 400
    assert api.json()["params"] == {field.split("-", 1)[1]: message}


def test_a_prefilled_reference_is_offered_even_when_older_than_the_newest_rows(monkeypatch):
    from base.params import Param
    from ml.models import DatasetSnapshot

    old = DatasetSnapshot.objects.create(name="old", genres=[], content_hash="1" * 64, n_members=0)
    param = Param("snapshot_id", "ref", model="ml.DatasetSnapshot", default=old.pk)
    monkeypatch.setattr(Param, "choice_list", lambda self: [])  # as if 100 newer snapshots filled the list
    from workers.forms import form_field

    field = form_field(param, "snapshot")
    assert field.initial == str(old.pk) and (str(old.pk), str(old)) in field.choices
