"""Text that Flowledger can store everywhere: no NUL character (U+0000).

PostgreSQL's text and jsonb refuse it, and the event store's own tags use it
(`services.store.transcoder`), so a command or request carrying it is refused with a field
error, at the door, rather than failing later in a store or a projection.
"""

from __future__ import annotations

from typing import Any

import msgspec

NUL_MESSAGE = "text must not contain the NUL character (U+0000)"

_ESCAPED_NUL = b"\\u0000"


def json_has_nul(encoded: bytes) -> bool:
    """Whether any string (key or value) of this JSON document holds U+0000. JSON escapes the
    character as \\u0000, so documents without that sequence (nearly all) are answered without
    decoding them."""
    if _ESCAPED_NUL not in encoded:
        return False
    return _holds_nul(msgspec.json.decode(encoded))


def holds_nul(encoded: bytes, decoded: Any) -> bool:
    """json_has_nul, for a document already decoded."""
    return _ESCAPED_NUL in encoded and _holds_nul(decoded)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    return False
