"""Pages of an instance's steps and history: at most `PER_PAGE` of each on its page, so that
the page and the live fragment it polls stay small however long the instance runs.

Pages are counted from the first item. A page asked for by number stays that page (a number
past the end is the last page); asked for by no number, the window is the latest `PER_PAGE`
items, counted as the last page (it overlaps the page before when the total is no multiple of
`PER_PAGE`), and moves on as the instance grows. The link to the last page names no number,
so following it keeps following the latest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

PER_PAGE = 100
STEPS = "steps_page"
HISTORY = "history_page"


@dataclass(frozen=True)
class Window:
    page: int  # 1-based
    pages: int
    first: int  # index of the page's first item
    end: int  # one past its last
    total: int


@dataclass(frozen=True)
class Pager:
    window: Window
    previous: str | None  # hrefs
    next: str | None


def window(total: int, asked: int | None, per_page: int = PER_PAGE) -> Window:
    pages = max(1, math.ceil(total / per_page))
    if asked is None:
        return Window(pages, pages, max(0, total - per_page), total, total)
    page = min(asked, pages)
    first = (page - 1) * per_page
    return Window(page, pages, first, min(first + per_page, total), total)


def query_string(params: Mapping[str, int | None]) -> str:
    pairs = [(name, value) for name, value in params.items() if value is not None]
    return f"?{urlencode(pairs)}" if pairs else ""


def pager(url: str, name: str, shown: Window, keep: Mapping[str, int | None]) -> Pager:
    """Links to the pages around `shown` of the list paged by the query parameter `name`,
    keeping the other parameters in `keep` as they are."""

    def href(page: int) -> str:
        return url + query_string({**keep, name: None if page == shown.pages else page})

    return Pager(
        shown,
        href(shown.page - 1) if shown.page > 1 else None,
        href(shown.page + 1) if shown.page < shown.pages else None,
    )
