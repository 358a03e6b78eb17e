"""A new job kind is one service function plus one entry in the kinds table (workers.kinds):
its validation, task, queue, time limits, acknowledgement mode, form choice and API choice all
follow from the entry (README, "How to extend -> Add a job kind")."""

from __future__ import annotations

from unittest import mock

import pytest

from base.params import Param, ParamSchema
from workers import kinds
from workers.jobs import enqueue, task_named
from workers.kinds import InvalidJobParams, JobKind, validate_params
from workers.lifecycle import finish_job
from workers.models import Job
from workers.queues import GPU_QUEUE

pytestmark = pytest.mark.django_db


# --- the kind's service, as an app would write it (here: in the test) ------------------------


def word_count_param_errors(params: dict, errors: dict) -> None:
    if not params["text"].strip():
        errors["text"] = "Must be some text."


WORD_COUNT_PARAMS = ParamSchema(
    (
        Param("text", "text", required=True, maximum=1000, help="The words to count."),
        Param("min_length", "int", label="shortest word", minimum=1, default=1, help="Shorter words are not counted."),
        Param("lower", "bool", default=True, help="Count case-insensitively."),
    ),
    check=word_count_param_errors,
)


def count_words(job: Job, progress) -> dict:
    words = [w for w in job.params["text"].split() if len(w) >= job.params.get("min_length", 1)]
    for done in range(1, len(words) + 1):
        progress(f"counted {done} of {len(words)} words", done / len(words))
    return {"words": len(words)}


@pytest.fixture
def word_count_kind():
    kind = kinds.register(
        JobKind(
            "wordcount",
            "Count words",
            params=WORD_COUNT_PARAMS,
            run=count_words,
            queue=GPU_QUEUE,
            hard_time_limit_s=300,
        )
    )
    yield kind
    kinds.unregister("wordcount")


def test_a_registered_kind_runs_end_to_end_through_enqueue_its_task_and_finish_job(
    word_count_kind, eager_celery, django_capture_on_commit_callbacks
):
    with pytest.raises(InvalidJobParams) as bad:
        enqueue("wordcount", {"text": "  "})
    assert bad.value.errors == {"text": "Must be some text."}
    with pytest.raises(InvalidJobParams) as bad:
        enqueue("wordcount", {"text": 3, "min_length": "x"})
    assert bad.value.errors == {"text": "Must be text.", "min_length": "Must be a whole number, got 'x'."}

    task = task_named("workers.run_wordcount")
    assert (task.time_limit, task.soft_time_limit) == (300, 180)
    assert not task.acks_late and not task.reject_on_worker_lost  # not idempotent
    assert kinds.task_routes()["workers.run_wordcount"] == {"queue": "gpu"}
    assert eager_celery.amqp.router.route({}, "workers.run_wordcount")["queue"].name == "gpu"

    with (
        mock.patch("workers.lifecycle.finish_job", wraps=finish_job) as finished,
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = enqueue("wordcount", {"text": "one two three"})
    job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)
    assert job.result == {"words": 3} and job.progress == 100.0 and job.queue == "gpu"
    assert job.get_kind_display() == "Count words"
    assert any("counted 3 of 3 words" in line for line in job.log)
    assert [c.args[1] for c in finished.call_args_list] == ["succeeded"]  # the one terminal path


def test_a_registered_kind_is_offered_by_the_form_and_the_api(word_count_kind, client, django_user_model, monkeypatch):
    from workers.forms import QueueJobForm

    assert ("wordcount", "Count words") in QueueJobForm().fields["kind"].choices
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    page = client.get("/jobs/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<option value="wordcount">Count words</option>' in html
    # Its options are fields of the form, from the schema alone: type, limits, default, help.
    assert '<fieldset class="kind-fields" data-kind="wordcount"' in html
    assert 'name="wordcount-text"' in html and "The words to count." in html
    assert 'name="wordcount-min_length" value="1" step="1" min="1"' in html
    assert (
        'name="wordcount-lower"' in html
        and "checked" in html.split('name="wordcount-lower"')[0][-200:] + (html.split('name="wordcount-lower"')[1][:80])
    )
    sent = []
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: sent.append(args))
    refused = client.post("/jobs/", {"kind": "wordcount", "wordcount-text": "  ", "wordcount-min_length": "0"})
    assert refused.status_code == 200 and not Job.objects.exists()
    form = refused.context["form"]
    assert form.errors["wordcount-min_length"] == ["Must be at least 1."]  # next to its field
    queued = client.post(
        "/jobs/",
        {"kind": "wordcount", "wordcount-text": "a bb ccc", "wordcount-min_length": "2", "wordcount-lower": "on"},
    )
    job = Job.objects.get()
    assert queued.status_code == 302 and job.params == {"text": "a bb ccc", "min_length": 2, "lower": True}

    # The API takes the same parameters through the same schema.
    with mock.patch("workers.jobs.send_job_message"):
        created = client.post(
            "/api/jobs/", {"kind": "wordcount", "params": {"text": "a b"}}, content_type="application/json"
        )
        refused = client.post(
            "/api/jobs/",
            {"kind": "wordcount", "params": {"text": "a", "min_length": 0, "colour": "red"}},
            content_type="application/json",
        )
    assert created.status_code == 201, created.content
    assert created.json()["kind"] == "wordcount" and created.json()["queue"] == "gpu"
    assert refused.status_code == 400
    assert refused.json() == {
        "params": {
            "min_length": "Must be at least 1.",
            "colour": "Unknown parameter colour; known: text, min_length, lower.",
        }
    }


def test_a_kind_without_a_schema_is_one_json_field_of_the_form(client, django_user_model, monkeypatch):
    kinds.register(JobKind("echo", "Echo", validate=word_count_param_errors, run=lambda job, p: dict(job.params)))
    try:
        staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
        client.force_login(staff)
        assert 'name="echo-params"' in client.get("/jobs/").content.decode()
        monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)
        refused = client.post("/jobs/", {"kind": "echo", "echo-params": '{"text": " "}'})
        assert refused.context["form"].errors["echo-params"] == ["text: Must be some text."]
        client.post("/jobs/", {"kind": "echo", "echo-params": '{"text": "hi"}'})
        assert Job.objects.get().params == {"text": "hi"}
    finally:
        kinds.unregister("echo")


def test_an_idempotent_kind_is_acked_late_and_unregistering_removes_the_kind():
    kinds.register(JobKind("noop", "No-op", params=ParamSchema(()), run=lambda job, p: {}, idempotent=True))
    try:
        task = task_named("workers.run_noop")
        assert task.acks_late and task.reject_on_worker_lost
        assert kinds.queue_for_task("workers.run_noop") == "default"
        with pytest.raises(ValueError, match="already registered"):
            kinds.register(JobKind("noop", "again", validate="x:y", run="x:y"))
    finally:
        kinds.unregister("noop")
    with pytest.raises(InvalidJobParams, match="Unknown job kind 'noop'"):
        validate_params("noop", {})
    assert "workers.run_noop" not in kinds.task_routes()


def test_the_built_in_kinds_keep_their_tasks_queues_and_limits():
    expected = {
        "import": ("workers.run_import", "default", 4 * 3600, False),
        "preprocess": ("workers.run_preprocess", "default", 2 * 3600, False),
        "snapshot": ("workers.run_snapshot", "default", 3600, False),
        "train": ("workers.run_train", "gpu", 6 * 3600, False),
        "evaluate": ("workers.run_evaluate", "gpu", 3600, False),
        "predict": ("workers.start_batch_predict", "default", 600, True),
        "retrain": ("workers.run_retrain", "gpu", 7 * 3600, False),
        # a fan-out like predict's; its shards are workers.predict_shard tasks on the gpu queue
        "embed_catalog": ("workers.start_embed_catalog", "default", 600, True),
        "audit_labels": ("workers.run_audit_labels", "gpu", 2 * 3600, False),
        # a change set runs once (catalog.bulk claims it): not idempotent, a lost one ends failed
        "bulk_labels": ("workers.run_bulk_labels", "default", 3600, False),
    }
    found = {}
    for name, kind in kinds.KINDS.items():
        task = task_named(kind.task_name)
        assert task.soft_time_limit == task.time_limit - kinds.SOFT_MARGIN_S
        assert task.acks_late == task.reject_on_worker_lost == kind.idempotent
        found[name] = (task.name, kinds.queue_for_task(task.name), task.time_limit, kind.idempotent)
    assert found == expected
    assert kinds.task_routes()["workers.predict_shard"] == {"queue": "gpu"}
    shard = task_named("workers.predict_shard")
    assert shard.acks_late and shard.reject_on_worker_lost


def test_validating_every_kind_loads_no_pytorch():
    """The checks live with their services but load no engine: a web process validating a job
    stays light (and the first enqueue of a request stays fast)."""
    import subprocess
    import sys

    from tests.celery_worker import ROOT

    code = (
        "import sys, django; django.setup()\n"
        "from workers.kinds import KINDS, InvalidJobParams, validate_params\n"
        "for name in KINDS:\n"
        "    try:\n"
        "        validate_params(name, {'config': 'tfidf-linear', 'snapshot': {'seed': 1}})\n"
        "    except InvalidJobParams:\n"
        "        pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
