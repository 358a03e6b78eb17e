"""``{% for n in page|page_window %}``: the page numbers a pagination bar shows around the
current page (first, last, two either side; ``None`` for a gap), from Django's
``Paginator.get_elided_page_range``. Never iterates every page (2,000 of them at 100k movies)."""

from __future__ import annotations

from django import template
from django.core.paginator import Page

register = template.Library()


@register.filter
def page_window(page: Page, on_each_side: int = 2) -> list[int | None]:
    ellipsis = page.paginator.ELLIPSIS
    numbers = page.paginator.get_elided_page_range(page.number, on_each_side=on_each_side, on_ends=1)
    return [None if n == ellipsis else n for n in numbers]
