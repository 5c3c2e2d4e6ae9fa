"""Request bodies checked at the door, before any route reads them.

* Size: a declared `Content-Length` over the limit answers 413 without reading a byte; a body
  sent without one (chunked) is counted as it streams and refused as soon as it passes the
  limit, so nobody makes the service buffer 60 MB to find out it is too large.
* Media type: a body must be sent as JSON (415 otherwise), or a route would take it as bytes;
  the one exception is the console's URL-encoded forms under /console/.
* JSON: a route's parser (Python's `json`) would take `NaN`, `Infinity`, numbers out of range
  (1e400) and nesting as deep as its recursion allows. None of those survives the commands
  role's decoder (strict JSON, 64-bit numbers, MAX_COMMAND_DEPTH), so the write would be
  published, dead-lettered and answered 202. They answer 400 here instead, in the dialect's
  own error shape. Malformed JSON is left to the route, which reports where it broke.

Checked bodies are handed on whole; every body fits the limit, so buffering it costs nothing a
route would not spend anyway.
"""

from __future__ import annotations

import email.message
import itertools
import json
import operator
import re
from typing import Any

import msgspec
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.limits import MAX_COMMAND_DEPTH, MAX_HTTP_BODY_BYTES
from contracts.text import NUL_MESSAGE, holds_nul
from services.api.envelope import dialect_failure


class BodyGuard:
    """ASGI middleware: refuses bodies over `max_bytes` (413) and JSON bodies that no command
    could carry (400), before the app sees them."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_HTTP_BODY_BYTES, max_depth: int = MAX_COMMAND_DEPTH
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _content_length(headers)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        body, disconnected = await _read_at_most(receive, self.max_bytes)
        if body is None:
            await self._too_large(scope, receive, send)
            return
        content_type = headers.get("content-type")
        if body and is_console_form(scope["path"], content_type):
            # The console's HTML forms (services/console): size-checked above; each field is
            # checked by the console, a JSON payload with json_problem as here.
            await self.app(scope, _replay(body, disconnected, receive), send)
            return
        if body and not _is_json(content_type):
            message = "send the request body as JSON, with Content-Type: application/json"
            await dialect_failure(scope["path"], 415, message)(scope, receive, send)
            return
        problem = json_problem(body, self.max_depth)
        if problem is not None:
            await dialect_failure(scope["path"], 400, problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, disconnected, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        message = f"the request body is larger than {limit} bytes ({limit // 1024} KiB)"
        response = dialect_failure(scope["path"], 413, message)
        # The rest of the body is never read: the connection cannot carry another request.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None  # absent (chunked) or unreadable: the bytes are counted instead


async def _read_at_most(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """(the whole body, whether the client went away); body None once it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the client's own messages."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if disconnected:
        pending.append({"type": "http.disconnect"})

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


# --- JSON bodies -------------------------------------------------------------------------------


def json_problem(body: bytes, max_depth: int) -> str | None:
    """Why this JSON body can never be a command, or None (also for malformed JSON, which the
    route reports itself with the position of the error)."""
    if not body:
        return None
    if nesting_depth(body) > max_depth:
        return _too_deep(max_depth)
    try:
        document = msgspec.json.decode(body)
    except RecursionError:  # unclosed brackets, which the depth count does not see as nesting
        return _too_deep(max_depth)
    except msgspec.ValidationError as error:  # valid JSON the commands role cannot hold (1e400)
        return f"a number in the body is out of range: {error}"
    except msgspec.DecodeError:
        return _non_finite(body, max_depth)
    if holds_nul(body, document):
        return f"the body is not accepted: {NUL_MESSAGE}"
    return None


def _is_json(content_type: str | None) -> bool:
    # Every body here is JSON; any other (or no) content type would reach a route as raw bytes,
    # which no command can carry.
    if not content_type:
        return False
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    return parsed.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


CONSOLE_PREFIX = "/console/"
FORM_TYPE = "application/x-www-form-urlencoded"


def is_console_form(path: str, content_type: str | None) -> bool:
    """A form the console's pages post (URL-encoded, under /console/): the one non-JSON body."""
    if not path.startswith(CONSOLE_PREFIX) or not content_type:
        return False
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    return parsed.get_content_type() == FORM_TYPE


def _too_deep(max_depth: int) -> str:
    return f"the body nests JSON deeper than {max_depth} levels of [ and {{"


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _non_finite(body: bytes, max_depth: int) -> str | None:
    """The message for NaN or ±Infinity, which Python's json reads and strict JSON does not."""
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except _NonFinite as found:
        return (
            f"the body is not valid JSON: {found} is not a JSON number "
            "(NaN, Infinity and -Infinity have no JSON form)"
        )
    except RecursionError:
        return _too_deep(max_depth)
    except ValueError:
        pass  # malformed in another way: the route says where
    return None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
# An opener steps one level in, a closer one out: as bytes 2 and 0, less 1 at each position.
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nesting_depth(body: bytes) -> int:
    """How deep [ and { nest outside strings ({} and [] are 1), counted as the commands role
    counts a record (services/roles/intake.py): in C (regular expressions, accumulate, map),
    so even a whole body of brackets costs milliseconds, and without recursion."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    if not brackets:
        return 0
    reached = itertools.accumulate(brackets.translate(_STEPS))
    return max(map(operator.sub, reached, range(1, len(brackets) + 1)))
