"""Real headless Chromium for the day-to-day UX: the API docs page works offline, and
production-changing buttons ask before they act."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .test_browser import log_in, page  # noqa: F401  (the shared Chromium page fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def block_non_local_requests(page) -> list[str]:  # noqa: F811
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


def test_api_docs_render_the_operations_offline(page, live_server, labeler):  # noqa: F811
    blocked = block_non_local_requests(page)
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/api/docs/")
    operation = page.locator(".opblock-get .opblock-summary", has_text="/api/movies/").first
    operation.wait_for(state="visible")
    assert "GET" in operation.inner_text()
    page.goto(f"{live_server.url}/api/redoc/")
    page.locator("h1", has_text="genreweb API").first.wait_for(state="visible")
    assert blocked == []
