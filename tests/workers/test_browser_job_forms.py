"""Real headless Chromium on the Jobs page: the queue form shows the chosen kind's options with
their defaults, a bad value comes back as an error next to its field, and a finished job's
summary links to what it made."""

from __future__ import annotations

import re

import pytest

from tests.browser import log_in
from tests.factories import make_user
from workers.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff(db, monkeypatch):
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)  # no broker needed
    return make_user("sam", staff=True)


def open_queue_form(page, live_server, kind: str) -> None:  # noqa: F811
    log_in(page, live_server, "sam")
    page.goto(f"{live_server.url}/jobs/")
    page.click("#queue summary")
    page.select_option("select[name=kind]", kind)


def field(page, name: str):  # noqa: F811
    return page.locator(f"[name='{name}']")


def test_the_form_shows_the_chosen_kinds_options_and_queues_them(page, live_server, staff):  # noqa: F811
    open_queue_form(page, live_server, "snapshot")
    assert page.locator("fieldset[data-kind=snapshot]").is_visible()
    assert not page.locator("fieldset[data-kind=preprocess]").is_visible()
    # Prefilled with the service's defaults, each with its help.
    assert field(page, "snapshot-seed").input_value() == "0"  # the benchmark split (ml.engine.split)
    assert field(page, "snapshot-fractions").input_value() == "0.7 0.15 0.15"
    assert field(page, "snapshot-min_genre_count").input_value() == "20"
    assert "Seed of the stratified split" in page.locator("[data-field='snapshot-seed']").inner_text()

    page.select_option("select[name=kind]", "preprocess")
    assert page.locator("fieldset[data-kind=preprocess]").is_visible()
    assert not page.locator("fieldset[data-kind=snapshot]").is_visible()
    page.select_option("select[name='preprocess-grayscale_policy']", "exclude")
    field(page, "preprocess-min_year").fill("1990")
    field(page, "preprocess-max_year").fill("2015")
    field(page, "preprocess-dedupe").uncheck()
    field(page, "preprocess-force").check()
    page.click("#queue-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get()
    assert job.kind == "preprocess"
    assert job.params == {
        "grayscale_policy": "exclude",
        "min_year": 1990,
        "max_year": 2015,
        "dedupe": False,
        "force": True,
    }
    assert "'grayscale_policy': 'exclude'" in page.inner_text("#job")
    page.goto("about:blank")  # the queued job's page polls its status: stop before the database goes


def test_import_shows_the_fields_of_the_chosen_source(page, live_server, staff):  # noqa: F811
    open_queue_form(page, live_server, "import")
    page.select_option("select[name='import-source']", "csv")
    assert field(page, "import-path").is_visible() and field(page, "import-encoding").is_visible()
    assert not field(page, "import-api_key").is_visible()
    page.select_option("select[name='import-source']", "tmdb")
    assert field(page, "import-api_key").is_visible() and field(page, "import-date_from").is_visible()
    assert not field(page, "import-path").is_visible()
    assert field(page, "import-poster_size").input_value() == "w342"  # the command's default


def test_a_bad_value_comes_back_next_to_its_field(page, live_server, staff):  # noqa: F811
    open_queue_form(page, live_server, "snapshot")
    field(page, "snapshot-fractions").fill("0.5 0.3 0.3")
    field(page, "snapshot-seed").fill("21")
    page.click("#queue-form button[type=submit]")
    error = page.locator("[data-field='snapshot-fractions'] .error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Must add up to 1 (train + validation + test), got 1.1."
    # The form is open on the same kind, with what was typed kept.
    assert page.locator("fieldset[data-kind=snapshot]").is_visible()
    assert field(page, "snapshot-seed").input_value() == "21"
    assert page.locator(".error").count() == 1
    assert not Job.objects.exists()
    page.goto("about:blank")


def test_a_finished_jobs_summary_links_to_what_it_made(page, live_server, staff):  # noqa: F811
    from ml.models import ModelVersion
    from tests.factories import make_movies
    from workers.jobs import enqueue
    from workers.lifecycle import finish_job
    from workers.runners import run_snapshot, run_train

    make_movies(12)

    def run(kind, params, runner):  # what the worker does: the kind's runner, then finish_job
        job = enqueue(kind, params, staff)
        finish_job(job.pk, "succeeded", result=runner(job, lambda message, fraction: None))
        return Job.objects.get(pk=job.pk)

    snapshot_job = run("snapshot", {"seed": 3, "min_genre_count": 2}, run_snapshot)
    snapshot_id = snapshot_job.result["snapshot_id"]
    train_job = run("train", {"snapshot_id": snapshot_id, "config": "tfidf-linear"}, run_train)
    version = ModelVersion.objects.get(pk=train_job.result["model_version_id"])

    log_in(page, live_server, "sam")
    page.goto(f"{live_server.url}/jobs/{snapshot_job.pk}/")
    link = page.locator("#job-summary a", has_text=f"#{snapshot_id}").first
    assert link.get_attribute("href") == f"/admin/ml/datasetsnapshot/{snapshot_id}/change/"
    link.click()
    page.wait_for_url(f"{live_server.url}/admin/ml/datasetsnapshot/{snapshot_id}/change/")

    page.goto(f"{live_server.url}/jobs/{train_job.pk}/")
    page.locator("#job-summary a", has_text=f"#{version.pk}").first.click()
    page.wait_for_url(f"{live_server.url}/models/{version.pk}/")
    assert version.name in page.inner_text("h1")
