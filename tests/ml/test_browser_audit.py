"""Real headless Chromium against the live server: work "likely label errors" items with
each action from the keyboard and buttons, mark labels right, and see the item leave and
stay out after a re-audit that agrees."""

from __future__ import annotations

import re

import pytest

from ml.models import LabelReview
from ml.services import audit as audit_service
from tests.browser import log_in
from tests.ml.test_audit_review import catalog, fake_features, people, queue_titles  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def left(page) -> int:
    return int(page.inner_text("#queue-left"))


def title(page) -> str:
    return page.inner_text(".movie h1")


def test_work_likely_label_errors_with_each_action(page, live_server, catalog, fake_features, people):  # noqa: F811
    audit_service.run_audit(folds=4)
    log_in(page, live_server, "lena")
    page.click("nav >> text=Review")
    assert page.inner_text("#queue-count") == "4"
    page.click("table.review tbody tr:first-child td a")
    page.wait_for_selector("#audit-nav")
    assert left(page) == 4 and "(threshold 0." in page.inner_text("#audit-nav")

    # 1. accept one suggestion, then keep (reject) whatever is left: the item closes
    first = title(page)
    page.click("#audit-nav button[value=accept] >> nth=0")
    page.wait_for_selector(".msg.success")
    while title(page) == first:
        page.click("#audit-nav button[value=reject] >> nth=0")
        page.wait_for_selector(".msg.success")
    assert left(page) == 3

    # 2. labels are right (keyboard "c")
    confirmed = title(page)
    page.keyboard.press("c")
    page.wait_for_function("document.querySelector('#queue-left').innerText === '2'")
    assert title(page) != confirmed
    assert LabelReview.objects.filter(verdict="confirmed").count() == 1

    # 3. skip (keyboard "s"): recorded, the item stays in the queue
    skipped = title(page)
    page.keyboard.press("s")
    page.wait_for_url(re.compile(r"/review/errors/2/$"))
    assert left(page) == 2 and title(page) != skipped

    # 4. accept all (keyboard "a")
    page.keyboard.press("a")
    page.wait_for_function("document.querySelector('#queue-left').innerText === '1'")

    # 5. edit: "e" jumps to the genre toggles, Space toggles, Ctrl+Enter saves
    last = title(page)
    page.keyboard.press("e")
    page.keyboard.press("Space")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r"/review/errors/$"))
    assert "Nothing left to review" in page.inner_text("main")
    assert LabelReview.objects.filter(verdict="skipped").count() == 1
    assert LabelReview.objects.filter(verdict="confirmed").count() == 1
    # accept/reject, accept all and edit each closed an item as fixed
    assert LabelReview.objects.filter(verdict="fixed").count() == 3
    assert LabelReview.objects.filter(movie__title=last.strip(), verdict="fixed").exists()


def test_labels_right_leaves_and_stays_out_after_an_agreeing_audit(page, live_server, catalog, fake_features, people):  # noqa: F811
    audit_service.run_audit(folds=4)
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/models/review/errors/1/")
    page.wait_for_selector("#audit-nav")
    confirmed = title(page)
    page.click("#labels-right button")
    page.wait_for_selector(".msg.success")
    assert title(page) != confirmed and left(page) == 3
    review = LabelReview.objects.get()
    assert review.verdict == "confirmed" and review.user.username == "lena"
    # a later audit on the same labels agrees: the movie stays out of the queue
    audit_service.run_audit(folds=4)
    page.goto(f"{live_server.url}/models/review/errors/")
    assert page.inner_text("#queue-count") == "3"
    assert review.movie.title not in page.inner_text("table.review")
    assert review.movie.title not in queue_titles("errors")
    # the catalog's label-issues filter agrees
    page.goto(f"{live_server.url}/?audit=errors&view=list")
    assert review.movie.title not in page.inner_text("main")


def test_an_old_queue_bookmark_opens_the_audit_queue_and_j_k_move(page, live_server, catalog, fake_features, people):  # noqa: F811
    audit_service.run_audit(folds=4)
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/models/review/disagrees/1/")  # the removed in-sample queue
    page.wait_for_url(re.compile(r"/review/errors/1/$"))
    page.wait_for_selector("#audit-nav")
    assert "Likely label errors" in page.inner_text("#audit-nav") and left(page) == 4
    first = title(page)
    page.keyboard.press("j")  # next ...
    page.wait_for_url(re.compile(r"/review/errors/2/$"))
    assert title(page) != first
    page.keyboard.press("k")  # ... and back
    page.wait_for_url(re.compile(r"/review/errors/1/$"))
    assert title(page) == first
    page.goto(f"{live_server.url}/models/review/unsure/")
    page.wait_for_url(re.compile(r"/review/uncertain/$"))
    assert "Model unsure" in page.inner_text(".seg .on")
    assert "in-sample" not in page.inner_text("main") and "Model disagrees" not in page.inner_text("main")
