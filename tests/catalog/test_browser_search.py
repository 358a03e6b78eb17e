"""Real headless Chromium on the catalog page: a typed title comes first, the sort control
reorders the results, and the numbered pagination goes to page N."""

from __future__ import annotations

import re

import pytest

from tests.browser import card_titles, log_in

from .test_search_pages import big_catalog  # noqa: F401  (named movies + 330 fillers)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def first_card(page) -> str:
    return page.locator(".card .title").first.inner_text()


def test_typed_title_is_the_first_card(page, live_server, labeler, big_catalog):  # noqa: F811
    log_in(page, live_server, "lena")
    assert first_card(page) == "The Author"  # the most popular, without a query
    page.fill("input[name=q]", "Thor")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(r"q=Thor"))
    assert first_card(page) == "Thor"
    assert card_titles(page) == {"Thor", "Thor: Ragnarok"}  # not "The Author"
    assert page.input_value("select[name=sort]") == ""  # the default: relevance with a query


def test_sort_control_changes_the_order(page, live_server, labeler, big_catalog):  # noqa: F811
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/?q=thor")
    assert first_card(page) == "Thor"
    page.select_option("select[name=sort]", "year")  # submits the form by itself
    page.wait_for_url(re.compile(r"sort=year"))
    assert first_card(page) == "Thor: Ragnarok"
    assert "q=thor" in page.url  # the search is kept
    page.select_option("select[name=sort]", "title")
    page.wait_for_url(re.compile(r"sort=title"))
    assert page.locator(".card .title").all_inner_texts() == ["Thor", "Thor: Ragnarok"]


def test_numbered_pagination_goes_to_page_n(page, live_server, labeler, big_catalog):  # noqa: F811
    log_in(page, live_server, "lena")
    page.goto(f"{live_server.url}/?sort=title")
    page.click(".pagination a.page-number:text-is('3')")
    page.wait_for_url(re.compile(r"page=3"))
    assert page.inner_text(".pagination .current") == "3"
    assert "sort=title" in page.url
    # sort=title: Cup Final, Filler 000.. then on page 3 the 97th title is Filler 095
    assert first_card(page) == "Filler 095"
    page.click(".pagination a.last")
    page.wait_for_url(re.compile(r"page=7"))
    assert page.inner_text(".pagination .current") == "7"
