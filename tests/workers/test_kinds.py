"""A new job kind is one service function plus one entry in the kinds table (workers.kinds):
its validation, task, queue, time limits, acknowledgement mode, form choice and API choice all
follow from the entry (README, "How to extend -> Add a job kind")."""

from __future__ import annotations

from unittest import mock

import pytest

from workers import kinds
from workers.jobs import enqueue, task_named
from workers.kinds import InvalidJobParams, JobKind, validate_params
from workers.lifecycle import finish_job
from workers.models import Job
from workers.queues import GPU_QUEUE

pytestmark = pytest.mark.django_db


# --- the kind's service, as an app would write it (here: in the test) ------------------------


def word_count_param_errors(params: dict, errors: dict) -> None:
    if not isinstance(params.get("text"), str) or not params["text"].strip():
        errors["text"] = "Must be some text."


def count_words(job: Job, progress) -> dict:
    words = job.params["text"].split()
    for done in range(1, len(words) + 1):
        progress(f"counted {done} of {len(words)} words", done / len(words))
    return {"words": len(words)}


@pytest.fixture
def word_count_kind():
    kind = kinds.register(
        JobKind(
            "wordcount",
            "Count words",
            validate=word_count_param_errors,
            run=count_words,
            queue=GPU_QUEUE,
            hard_time_limit_s=300,
            form_fields=(),
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


def test_a_registered_kind_is_offered_by_the_form_and_the_api(word_count_kind, client, django_user_model):
    from workers.views import QueueJobForm

    assert ("wordcount", "Count words") in QueueJobForm().fields["kind"].choices
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    page = client.get("/jobs/")
    assert page.status_code == 200
    assert '<option value="wordcount">Count words</option>' in page.content.decode()
    # The page shows each kind's form fields from the table, the new kind's (none) included.
    fields = page.context["kind_fields"]
    assert fields["wordcount"] == [] and fields["train"] == ["snapshot_id", "config"]
    assert 'id="kind-fields"' in page.content.decode()
    with mock.patch("workers.jobs._send_job_message"):
        created = client.post(
            "/api/jobs/", {"kind": "wordcount", "params": {"text": "a b"}}, content_type="application/json"
        )
        refused = client.post("/api/jobs/", {"kind": "wordcount", "params": {}}, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["kind"] == "wordcount" and created.json()["queue"] == "gpu"
    assert refused.status_code == 400 and refused.json() == {"params": {"text": "Must be some text."}}


def test_an_idempotent_kind_is_acked_late_and_unregistering_removes_the_kind():
    kinds.register(
        JobKind("noop", "No-op", validate=lambda params, errors: None, run=lambda job, p: {}, idempotent=True)
    )
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
        "audit_labels": ("workers.run_audit_labels", "gpu", 2 * 3600, False),
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
