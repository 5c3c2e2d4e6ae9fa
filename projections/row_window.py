"""A read model's long list kept as rows beside its document, and the window a fold sees of it.

The Cloudflare document's `steps` and the staged one's `stages` grow with every step: held in
the document, a 3,000-step instance's megabyte would be read, folded and written whole for each
of its events. Their views keep one row per item instead (keyed by document key and index),
and the document holds the rest, the summary. The projections role hands a fold the summary
with only the last stored item loaded: `doc[field]` is then a window, the items from index
`doc[WINDOW_START]` on. The folds only ever append an item, change the last one or cut the
list (a restart), so the window is all they need; a document folded from nothing (a test, an
`as_of` read) simply has the whole list in its window, from 0.

Pure: the store splits a folded document with `split`, and reassembles a stored one with
`loaded` (for a fold) or `whole` (for readers). A stored summary names its list's field
(`ROWS_OF`) and length (`ROWS_COUNT`: the last item is found by its index, not searched for);
a document without them is stored whole, as every document was before its items became rows,
and moves to rows the next time it is written.
"""

from __future__ import annotations

from typing import Any

WINDOW_START = "window_start"
ROWS_OF = "rows_of"
ROWS_COUNT = "rows_count"
_MARKS = (ROWS_OF, ROWS_COUNT)
Item = tuple[int, Any]  # (index in the whole list, item)


def window_start(doc: dict[str, Any]) -> int:
    return int(doc.get(WINDOW_START, 0))


def cut(doc: dict[str, Any], field: str, keep: int) -> None:
    """Keeps the first `keep` items of the whole list (a restart), in the caller's copy."""
    start = window_start(doc)
    if keep < start:
        # The kept items are all stored already; the window starts empty where they end.
        doc[WINDOW_START] = keep
        doc[field] = []
    else:
        doc[field] = doc[field][: keep - start]


def last_index(summary: dict[str, Any]) -> int | None:
    """The index of a stored summary's last item row; None when it has none."""
    count = int(summary.get(ROWS_COUNT, 0))
    return count - 1 if ROWS_OF in summary and count > 0 else None


def loaded(summary: dict[str, Any], last: Any | None) -> dict[str, Any]:
    """What a fold gets: the stored summary and its last item (`last_index`) as its window."""
    field = summary.get(ROWS_OF)
    if field is None:
        return summary  # stored whole
    rest = without_rows(summary)
    count = int(summary[ROWS_COUNT])
    if last is None:
        return {**rest, field: [], WINDOW_START: count}
    return {**rest, field: [last], WINDOW_START: count - 1}


def whole(summary: dict[str, Any], items: list[Any]) -> dict[str, Any]:
    """The document readers see: the summary with its whole list."""
    field = summary.get(ROWS_OF)
    if field is None:
        return summary  # stored whole
    return {**without_rows(summary), field: items}


def without_rows(summary: dict[str, Any]) -> dict[str, Any]:
    """The stored summary alone, for readers that show nothing of its list."""
    return {k: v for k, v in summary.items() if k not in _MARKS}


def split(
    doc: dict[str, Any], field: str, before: dict[str, Any] | None
) -> tuple[dict[str, Any], list[Item], int | None]:
    """A folded document as stored: its summary, the items to write (those not stored as they
    are now) and the index from which stored items are deleted (None when none are)."""
    start = window_start(doc)
    window: list[Any] = doc.get(field) or []
    summary = {k: v for k, v in doc.items() if k != field and k != WINDOW_START}
    end = start + len(window)
    summary.update({ROWS_OF: field, ROWS_COUNT: end})
    stored: dict[int, Any] = {}
    stored_end = 0
    if before is not None and WINDOW_START in before:  # else nothing of it is stored as rows
        stored = dict(enumerate(before[field], start=window_start(before)))
        stored_end = window_start(before) + len(before[field])
    changed = [
        (index, item)
        for index, item in enumerate(window, start=start)
        if index not in stored or stored[index] != item
    ]
    return summary, changed, end if end < stored_end else None
