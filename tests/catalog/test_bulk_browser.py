"""Real headless Chromium (Debian chromium + Playwright) against the live server: bulk-add a
genre to a filtered set with the keyboard (the dialog shows the count), see its page follow
the job to the end, undo it the same way, and download the CSV export of the filter.

The bulk_labels jobs run on a real Celery worker process where PostgreSQL and Redis are
configured (the worker shares the test database); elsewhere in the live server's thread
when their message is sent (eager Celery), after the request has answered."""

from __future__ import annotations

import csv
import io

import pytest
from django.conf import settings

from catalog.models import ChangeSet
from tests.browser import log_in as shared_log_in
from tests.celery_worker import WorkerProcess
from tests.factories import genre_names, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(request, tmp_path):
    """What runs the jobs the pages queue: a Celery worker process, or eager Celery."""
    real = settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and settings.CELERY_BROKER_URL.startswith(
        "redis"
    )
    if not real:
        request.getfixturevalue("eager_celery")
        yield None
        return
    process = WorkerProcess(tmp_path / "worker", use_redis=True)
    (tmp_path / "worker").mkdir()
    process.start(timeout=120)
    try:
        yield process
    finally:
        process.stop()


def wait_until_succeeded(page, worker) -> None:
    """The change-set page polls its status and reloads once when it has finished."""
    try:
        page.wait_for_function(
            "document.getElementById('change-set-status').textContent.trim() === 'Succeeded'"
            " && !document.querySelector('[data-status-url]')",
            timeout=120_000,
        )
    except Exception as exc:
        raise AssertionError(
            f"{ChangeSet.objects.values('pk', 'status', 'error')}\n{worker and worker.read_log()}"
        ) from exc


@pytest.fixture
def catalog(drama_catalog):
    make_user("lena")
    return drama_catalog


def log_in(page, live_server) -> None:
    shared_log_in(page, live_server, "lena")


def test_bulk_add_to_a_filtered_set_undo_it_and_export_csv(page, live_server, catalog, worker):
    log_in(page, live_server)
    # filter the catalog: dramas from 2000 on
    page.select_option("#filters select[name=genre]", "drama")
    page.fill("#filters input[name=year_min]", "2000")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**year_min=2000**")
    assert set(page.locator(".card .title").all_inner_texts()) == {"New Drama", "Newer Drama"}

    # the bulk bar, by keyboard: all matching this filter, add Comedy, Apply, the dialog, Enter
    page.focus("#scope-filter")
    page.keyboard.press("Space")
    assert page.is_checked("#scope-filter")
    page.focus("#bulk select[name=action]")
    page.select_option("#bulk select[name=action]", "add")
    page.select_option("#bulk select[name=genre]", "comedy")
    page.focus("#bulk-apply")
    page.keyboard.press("Enter")
    page.wait_for_selector("#bulk-dialog[open]")
    assert "Add Comedy to 2 movies (all matching this filter)" in page.inner_text("#bulk-question")
    assert page.evaluate("document.activeElement.id") == "bulk-confirm"
    assert not ChangeSet.objects.exists()  # nothing happens before the confirmation
    page.keyboard.press("Enter")
    page.wait_for_url("**/changes/*/**")
    # the request answered at once: the change set's page, queued (or already further), as a job
    assert "Adding Comedy to all matching genre=drama, year_min=2000 as job #" in page.inner_text(".messages")
    wait_until_succeeded(page, worker)
    assert "2 movies looked at: 2 changed" in page.inner_text("#change-set-counts")
    page.wait_for_selector("#undo-button")
    assert genre_names(catalog["new"]) == {"Drama", "Comedy"} and genre_names(catalog["newer"]) == {"Drama", "Comedy"}
    assert genre_names(catalog["old"]) == {"Drama"} and genre_names(catalog["horror"]) == {"Horror"}

    # back on the filtered catalog the cards show it
    page.click("text=Back to the catalog")
    page.wait_for_url("**year_min=2000**")
    chips = page.locator(".card").filter(has_text="New Drama").locator(".chip").all_inner_texts()
    assert "Comedy" in chips

    # export the filter as CSV: a real download
    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert sorted((r["title"], r["genres"], r["last_changed_by"]) for r in rows) == [
        ("New Drama", "Comedy|Drama", "lena"),
        ("Newer Drama", "Comedy|Drama", "lena"),
    ]
    change_set = ChangeSet.objects.get()
    assert {r["last_change_set"] for r in rows} == {str(change_set.pk)}

    # undo from the history page (reachable from the nav), confirming the browser's question
    page.click("nav >> text=Changes")
    page.click(f"#change-sets >> text=#{change_set.pk}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.focus("#undo-button")
    page.keyboard.press("Enter")
    page.wait_for_selector(f".msg.success >> text=Undoing bulk change #{change_set.pk}")
    wait_until_succeeded(page, worker)
    assert "2 changed" in page.inner_text("#change-set-counts")
    assert genre_names(catalog["new"]) == {"Drama"} and genre_names(catalog["newer"]) == {"Drama"}
    undo = ChangeSet.objects.get(undoes=change_set)
    assert f"Undo of #{change_set.pk}" in page.inner_text("#change-set-summary").replace("\n", " ")
    assert undo.changed == 2


def test_check_one_movie_and_remove_a_genre(page, live_server, catalog, worker):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/?view=list")
    page.focus(f"input.pick[value='{catalog['old'].pk}']")
    page.keyboard.press("Space")
    assert page.inner_text("#checked-count") == "1"
    page.select_option("#bulk select[name=action]", "remove")
    page.select_option("#bulk select[name=genre]", "drama")
    page.click("#bulk-apply")
    page.wait_for_selector("#bulk-dialog[open]")
    assert "Remove Drama from 1 movie?" in page.inner_text("#bulk-question")
    page.click("#bulk-cancel")  # cancel: nothing happens
    assert not ChangeSet.objects.exists()
    page.click("#select-page")  # select all on this page: 4
    assert page.inner_text("#checked-count") == "4"
    page.click("#select-page")
    page.check(f"input.pick[value='{catalog['old'].pk}']")
    page.click("#bulk-apply")
    page.click("#bulk-confirm")
    page.wait_for_url("**/changes/*/**")
    wait_until_succeeded(page, worker)
    page.wait_for_selector("#undo-button")
    assert genre_names(catalog["old"]) == set() and genre_names(catalog["new"]) == {"Drama"}
