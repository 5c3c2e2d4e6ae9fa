"""The windows of an instance's steps and history (pure)."""

from __future__ import annotations

from services.console.paging import Window, pager, window


def test_no_number_is_the_latest_hundred_and_a_number_past_the_end_the_last_page() -> None:
    assert window(250, None) == Window(page=3, pages=3, first=150, end=250, total=250)
    assert window(250, 3) == Window(page=3, pages=3, first=200, end=250, total=250)
    assert window(250, 99) == window(250, 3)
    assert window(0, None) == Window(page=1, pages=1, first=0, end=0, total=0)
    assert window(40, 1) == Window(page=1, pages=1, first=0, end=40, total=40)


def test_links_keep_the_other_parameters_and_the_last_page_names_no_number() -> None:
    keep = {"as_of": 7, "steps_page": 2, "history_page": None}
    links = pager("/i", "steps_page", window(250, 2), keep)
    assert links.previous == "/i?as_of=7&steps_page=1"
    assert links.next == "/i?as_of=7"
    first = pager("/i", "history_page", window(30, None), {"history_page": None})
    assert (first.previous, first.next) == (None, None)
