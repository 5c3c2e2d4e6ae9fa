"""JSON answers that render whatever a stored document holds.

FastAPI serializes a route's result with pydantic in JSON mode, which stops 255 levels into an
`Any` value (params, outputs, payloads: whatever a producer put on Kafka), so one deep
document made its read routes answer 500, lists of the whole account included. Here the
response model still checks every answer and picks its documented fields (validation and a
python-mode dump do not descend into `Any`), and msgspec writes the JSON; a value deeper than
the interpreter's recursion allows is written by an iterative encoder instead. Routes keep
their `response_model` (the OpenAPI document's and the check's) and return `answer(...)`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import msgspec
from fastapi import Request
from fastapi.responses import Response
from pydantic import TypeAdapter

_encoder = msgspec.json.Encoder()


def answer(request: Request, content: Any) -> Response:
    """`content` rendered as the route that matched `request` declares its answer: its
    response_model, status_code and response_model_exclude_unset."""
    route = request.scope["route"]
    return rendered(
        route.response_model,
        content,
        status_code=route.status_code or 200,
        exclude_unset=route.response_model_exclude_unset,
    )


def rendered(
    shape: Any, content: Any, *, status_code: int = 200, exclude_unset: bool = False
) -> Response:
    """`content` as the JSON answer of type `shape` (a response model), the way FastAPI
    renders it (`exclude_unset` as `response_model_exclude_unset`), at any depth."""
    adapter = _adapter(shape)
    checked = adapter.dump_python(
        adapter.validate_python(content), by_alias=True, exclude_unset=exclude_unset
    )
    return Response(encode(checked), status_code=status_code, media_type="application/json")


@functools.cache
def _adapter(shape: Any) -> TypeAdapter[Any]:
    return TypeAdapter(shape)


def encode(value: Any) -> bytes:
    """Compact JSON, UTF-8 unescaped (as FastAPI's JSONResponse writes it)."""
    try:
        return _encoder.encode(value)
    except RecursionError:
        return b"".join(_pieces(value))


class _Raw:
    """Bytes to write as they are (punctuation), told apart from the values on the stack."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text


_OPEN_OBJECT, _CLOSE_OBJECT = _Raw(b"{"), _Raw(b"}")
_OPEN_ARRAY, _CLOSE_ARRAY = _Raw(b"["), _Raw(b"]")


def _pieces(value: Any) -> Iterator[bytes]:
    """The JSON of `value` in pieces, with an explicit stack instead of recursion."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            yield item.text
        elif isinstance(item, dict):
            stack.append(_CLOSE_OBJECT)
            members = list(item.items())
            for index in range(len(members) - 1, -1, -1):
                key, child = members[index]
                separator = b"," if index else b""
                stack += [child, _Raw(separator + _encoder.encode(str(key)) + b":")]
            stack.append(_OPEN_OBJECT)
        elif isinstance(item, list | tuple):
            stack.append(_CLOSE_ARRAY)
            for index in range(len(item) - 1, -1, -1):
                stack += [item[index]] + ([_Raw(b",")] if index else [])
            stack.append(_OPEN_ARRAY)
        else:
            yield _encoder.encode(item)
