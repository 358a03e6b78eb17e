"""Real headless Chromium for the day-to-day UX: the API docs page works offline, and
production-changing buttons ask before they act."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def block_non_local_requests(page) -> list[str]:
    """Aborts every request to a host other than the live server's; returns the blocked URLs."""
    blocked: list[str] = []

    def handle(route):
        host = urlsplit(route.request.url).hostname
        if host in {"localhost", "127.0.0.1", "::1"}:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.context.route("**/*", handle)
    return blocked


def test_api_docs_render_the_operations_offline(page, live_server, labeler):
    blocked = block_non_local_requests(page)
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/api/docs/")
    operation = page.locator(".opblock-get .opblock-summary", has_text="/api/movies/").first
    operation.wait_for(state="visible")
    assert "GET" in operation.inner_text()
    page.goto(f"{live_server.url}/api/redoc/")
    page.locator("h1", has_text="genreweb API").first.wait_for(state="visible")
    assert blocked == []


def answer_next_dialog(page, accept: bool) -> list[str]:
    """Answers the next confirm() and returns the list its question lands in."""
    questions: list[str] = []

    def handle(dialog):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", handle)
    return questions


def test_cancel_job_asks_first(page, live_server, staff):
    from workers.models import Job

    job = Job.objects.create(kind="preprocess", requested_by=staff, celery_task_id="browser-test")
    log_in(page, live_server, "sam")
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    questions = answer_next_dialog(page, accept=False)
    page.click(".page-head button:has-text('Cancel')")
    page.wait_for_timeout(500)  # a submit would have started loading by now
    assert questions and f"Cancel job #{job.pk}" in questions[0]
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and not job.cancel_requested
    questions = answer_next_dialog(page, accept=True)
    page.click(".page-head button:has-text('Cancel')")
    page.wait_for_selector(".msg.success")
    assert questions
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert page.text_content("#job-status").strip() == "Cancelled"


def test_promote_asks_first(page, live_server, staff, world, candidate_version):
    from ml.services.registry import production_version

    old, candidate = world["version"], candidate_version
    log_in(page, live_server, "sam")
    page.goto(f"{live_server.url}/models/{candidate.pk}/")
    questions = answer_next_dialog(page, accept=False)
    page.click("#promote")
    page.wait_for_timeout(500)
    assert questions and "production model" in questions[0]
    assert production_version().pk == old.pk
    questions = answer_next_dialog(page, accept=True)
    page.click("#promote")
    page.wait_for_selector(".badge.ok:has-text('production')")
    assert questions
    assert production_version().pk == candidate.pk
