"""Real headless Chromium (Debian chromium + Playwright) against pytest-django's live server:
log in, filter the catalog, relabel with the keyboard and see the history, accept a
suggestion from a review queue, open a model report with its plots, and queue a job that a
real Celery worker runs while the page's progress bar follows it to the end."""

from __future__ import annotations

import re

import pytest

from catalog.models import MovieGenre
from tests.browser import card_titles, log_in
from tests.celery_worker import WorkerProcess
from workers.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_log_in_and_filter_the_catalog(page, live_server, labeler, world):
    log_in(page, live_server, "lena")
    assert card_titles(page) == {"Laugh Track", "Night Shift", "Long Road", "Edge Case", "Quiet Years"}
    page.fill("input[name=q]", "laugh")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"q=laugh"))
    assert card_titles(page) == {"Laugh Track"}
    page.click("text=Reset")
    page.select_option("select[name=genre]", "drama")
    page.fill("input[name=year_min]", "2000")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"genre=drama"))
    assert card_titles(page) == {"Long Road"}
    page.select_option("select[name=genre]", "comedy")
    page.fill("input[name=year_min]", "")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"genre=comedy"))
    assert card_titles(page) == {"Laugh Track", "Night Shift"}
    page.click("text=List")
    assert page.locator("table.movies-list tbody tr").count() == 2
    # an old bookmark of the removed model-opinion filter lands on the audit filter
    page.goto(f"{live_server.url}/?model=disagrees&genre=comedy")
    page.wait_for_url(re.compile(r"/\?genre=comedy&audit=errors$"))
    assert page.input_value("select[name=audit]") == "errors" and page.locator("select[name=model]").count() == 0


def test_relabel_with_the_keyboard_and_see_the_history(page, live_server, labeler, world):
    movie = world["movies"]["Long Road"]
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/movies/{movie.pk}/")
    page.keyboard.press("e")  # jumps into the relabel form
    assert page.evaluate("document.activeElement.name") == "genres"
    page.click(".toggle:has-text('Romance')")
    page.fill("input[name=reason]", "a love story too")
    page.focus("input[name=reason]")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".msg.success")
    assert "added Romance" in page.inner_text(".messages")
    history = page.inner_text("table.history")
    assert "+ Romance" in history and "a love story too" in history and "lena" in history
    assert set(MovieGenre.objects.filter(movie=movie).values_list("genre__name", flat=True)) == {"Drama", "Romance"}


def test_open_a_model_report_with_its_plots(page, live_server, labeler, world):
    log_in(page, live_server, "lena")
    page.click("nav >> text=Models")
    page.click("text=tiny v1")
    page.wait_for_selector("#genre-table")
    assert page.locator("#genre-table tbody tr").count() == 5
    images = page.locator(".plots img")
    assert images.count() == 5
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.plots img')).every(i => i.complete && i.naturalWidth > 100)"
    )


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.slow
def test_queue_a_job_and_watch_its_progress_reach_done(page, live_server, staff, world, tmp_path):
    worker = WorkerProcess(tmp_path / "worker", use_redis=True)
    (tmp_path / "worker").mkdir()
    worker.start(timeout=120)
    try:
        log_in(page, live_server, "sam")
        page.click("nav >> text=Jobs")
        page.click("#queue summary")
        page.select_option("select[name=kind]", "preprocess")
        page.click("#queue-form button[type=submit]")
        page.wait_for_url(re.compile(r"/jobs/\d+/$"))
        job = Job.objects.get()
        assert job.requested_by == staff
        # The page polls the status endpoint; when the job finishes it reloads once.
        try:
            page.wait_for_function(
                "document.getElementById('job-status').textContent.trim() === 'Succeeded'", timeout=240_000
            )
        except Exception as exc:
            job.refresh_from_db()
            raise AssertionError(f"job {job.status} {job.step!r} {job.log[-5:]}\n{worker.read_log()}") from exc
        assert page.get_attribute("#job-progress", "aria-valuenow") == "100"
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error or worker.read_log()
        assert "Retry" not in page.inner_text(".page-head")
    finally:
        worker.stop()
