"""Request bodies are judged at the door (services/api/body_guard.py), before any route or the
token check: too large answers 413 without being read whole, JSON no command can carry
(NaN, Infinity, numbers out of range, nesting past MAX_COMMAND_DEPTH) answers 400, in the
error shape of the API the path belongs to. No broker is needed: nothing here gets that far,
and what passes the door meets a process that takes no writes (503).
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from contracts.limits import MAX_COMMAND_DEPTH, MAX_HTTP_BODY_BYTES
from services.api.app import create_api
from services.api.body_guard import nesting_depth

ACCOUNT = "acc"
TOKEN = "tok-" + uuid.uuid4().hex
CF_CREATE = f"/client/v4/accounts/{ACCOUNT}/workflows/wf/instances"
CF_EVENT = f"/client/v4/accounts/{ACCOUNT}/workflows/wf/instances/i-1/events/approved"
ONFIDO_CREATE = "/v3.6/workflow_runs"
JSON = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}


def bare_api() -> FastAPI:
    """The real app without a broker or store: reads have no views, writes no gateway."""
    return create_api(
        tokens={TOKEN: frozenset({ACCOUNT})}, views={}, readiness=lambda: {"ready": True}
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=bare_api(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowledger") as http:
        yield http


def nested(depth: int) -> bytes:
    """A JSON object `depth` levels deep (the outermost object counts)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def padded_body(size: int) -> bytes:
    """A valid JSON object of exactly `size` bytes."""
    head, tail = b'{"params":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def assert_cloudflare_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["result"] is None
    [error] = body["errors"]
    assert error["code"] == 10000 + status
    assert all(word in error["message"] for word in words), error["message"]
    assert response.headers["x-should-retry"] == "false"


def assert_passed_the_door(response: httpx.Response) -> None:
    """Answered by the write route itself: this process takes no writes."""
    assert response.status_code == 503, response.text
    assert "does not accept writes" in response.json()["errors"][0]["message"]


def assert_onfido_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "fields"}
    assert error["type"] == "validation_error"
    assert all(word in error["message"] for word in words), error["message"]


# --- size -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CF_CREATE, ONFIDO_CREATE])
async def test_a_body_declared_larger_than_the_limit_answers_413_in_the_dialects_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(path, content=padded_body(MAX_HTTP_BODY_BYTES + 1), headers=JSON)

    check = assert_onfido_error if path == ONFIDO_CREATE else assert_cloudflare_error
    check(response, 413, str(MAX_HTTP_BODY_BYTES))
    assert response.headers["connection"] == "close"


async def test_a_body_of_exactly_the_limit_passes_the_door(client: httpx.AsyncClient) -> None:
    response = await client.post(CF_CREATE, content=padded_body(MAX_HTTP_BODY_BYTES), headers=JSON)

    assert_passed_the_door(response)


async def test_a_streamed_body_is_refused_once_it_passes_the_limit_without_reading_the_rest(
    client: httpx.AsyncClient,
) -> None:
    chunk = b" " * 64 * 1024
    total = 60 * 1024 * 1024
    sent = 0

    async def sixty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < total:
            sent += len(chunk)
            yield chunk

    # No Content-Length: httpx sends an iterator chunked, so only counting can stop it.
    response = await client.post(CF_CREATE, content=sixty_megabytes(), headers=JSON)

    assert_cloudflare_error(response, 413, str(MAX_HTTP_BODY_BYTES))
    assert sent <= MAX_HTTP_BODY_BYTES + len(chunk)


async def test_a_streamed_body_within_the_limit_passes_the_door(
    client: httpx.AsyncClient,
) -> None:
    body = padded_body(MAX_HTTP_BODY_BYTES)

    async def in_pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]

    response = await client.post(CF_CREATE, content=in_pieces(), headers=JSON)

    assert_passed_the_door(response)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, int]]:
    """The bare app behind a real uvicorn on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = uvicorn.Server(uvicorn.Config(bare_api(), lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_over_real_http_a_declared_60_mb_body_is_answered_413_before_it_is_sent(
    served: tuple[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(*served)
    head = (
        f"POST {CF_CREATE} HTTP/1.1\r\nHost: flowledger\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {60 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode())  # and not one byte of the body
    await writer.drain()

    answer = await reader.read()  # the server answers, then closes the connection
    writer.close()

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:300]
    assert b"connection: close" in rest.lower()
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["errors"][0]["code"] == 10413


# --- JSON no command can carry ----------------------------------------------------------------

NOT_JSON_NUMBERS = [
    (b'{"params": {"x": NaN}}', "NaN"),
    (b'{"params": {"x": Infinity}}', "Infinity"),
    (b'{"params": [1, -Infinity]}', "-Infinity"),
]


@pytest.mark.parametrize(("body", "word"), NOT_JSON_NUMBERS)
async def test_nan_and_infinity_answer_400_in_cloudflares_envelope(
    client: httpx.AsyncClient, body: bytes, word: str
) -> None:
    for path in (CF_CREATE, CF_EVENT):
        response = await client.post(path, content=body, headers=JSON)

        assert_cloudflare_error(response, 400, word, "not a JSON number")


@pytest.mark.parametrize(("body", "word"), NOT_JSON_NUMBERS)
async def test_nan_and_infinity_answer_400_in_onfidos_error_shape(
    client: httpx.AsyncClient, body: bytes, word: str
) -> None:
    onfido_body = body.replace(b'"params"', b'"custom_data"')

    response = await client.post(ONFIDO_CREATE, content=onfido_body, headers=JSON)

    assert_onfido_error(response, 400, word, "not a JSON number")


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 5000])
async def test_a_number_too_large_for_any_command_answers_400(
    client: httpx.AsyncClient, number: bytes
) -> None:
    cloudflare = await client.post(CF_EVENT, content=b'{"x": %s}' % number, headers=JSON)
    onfido = await client.post(ONFIDO_CREATE, content=b'{"x": [%s]}' % number, headers=JSON)

    assert_cloudflare_error(cloudflare, 400, "out of range")
    assert_onfido_error(onfido, 400, "out of range")


@pytest.mark.parametrize("depth", [MAX_COMMAND_DEPTH + 1, 260, 100_000])
async def test_json_nested_deeper_than_the_limit_answers_400_in_each_dialect(
    client: httpx.AsyncClient, depth: int
) -> None:
    cloudflare = await client.post(CF_EVENT, content=nested(depth), headers=JSON)
    listed = await client.post(f"{CF_CREATE}/batch", content=b"[" * depth, headers=JSON)
    onfido = await client.post(ONFIDO_CREATE, content=nested(depth), headers=JSON)

    limit = f"deeper than {MAX_COMMAND_DEPTH} levels"
    assert_cloudflare_error(cloudflare, 400, limit)
    assert_cloudflare_error(listed, 400, limit)  # unclosed, too: a parser would descend
    assert_onfido_error(onfido, 400, limit)


async def test_json_nested_exactly_to_the_limit_passes_the_door(
    client: httpx.AsyncClient,
) -> None:
    body = nested(MAX_COMMAND_DEPTH)
    assert nesting_depth(body) == MAX_COMMAND_DEPTH

    response = await client.post(CF_EVENT, content=body, headers=JSON)

    assert_passed_the_door(response)


async def test_nan_inside_a_string_passes_and_malformed_json_is_left_to_the_route(
    client: httpx.AsyncClient,
) -> None:
    quoted = await client.post(CF_EVENT, content=b'{"x": "NaN [[[ Infinity"}', headers=JSON)
    malformed = await client.post(CF_EVENT, content=b'{"x": ', headers=JSON)

    assert_passed_the_door(quoted)
    # The route's own parser reports malformed JSON, with where it broke.
    assert malformed.status_code == 400 and "JSON decode error" in malformed.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_not_sent_as_json_answers_415_in_each_dialect(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    if content_type is not None:
        headers["content-type"] = content_type

    # curl -d sends form-encoded: the route would take the bytes as the event's payload.
    cloudflare = await client.post(CF_EVENT, content=b'{"x": 1}', headers=headers)
    onfido = await client.post(ONFIDO_CREATE, content=b"{}", headers=headers)
    charset = await client.post(
        CF_EVENT, content=b"{}", headers={**JSON, "content-type": "application/json; charset=utf-8"}
    )

    assert_cloudflare_error(cloudflare, 415, "application/json")
    assert_onfido_error(onfido, 415, "application/json")
    assert_passed_the_door(charset)


async def test_the_door_judges_bodies_before_the_token(client: httpx.AsyncClient) -> None:
    no_token = {"content-type": "application/json"}

    response = await client.post(CF_EVENT, content=b"[NaN]", headers=no_token)

    assert_cloudflare_error(response, 400, "NaN")


def test_nesting_depth_counts_brackets_outside_strings() -> None:
    cases: dict[bytes, int] = {
        b"1": 0,
        b'"[[{{"': 0,
        b"[]": 1,
        b'{"a": [1, {"b": "]]]"}]}': 3,
        b'["\\"[", [[]]]': 3,
        nested(MAX_COMMAND_DEPTH): MAX_COMMAND_DEPTH,
    }
    depths: dict[bytes, Any] = {body: nesting_depth(body) for body in cases}

    assert depths == cases


@pytest.mark.parametrize("body", [b'{"x": "a\\u0000b"}', b'{"a\\u0000": 1}', b'[["\\u0000"]]'])
async def test_a_nul_character_anywhere_in_the_body_answers_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    cloudflare = await client.post(CF_EVENT, content=body, headers=JSON)
    onfido = await client.post(ONFIDO_CREATE, content=body, headers=JSON)

    assert_cloudflare_error(cloudflare, 400, "NUL character")
    assert_onfido_error(onfido, 400, "NUL character")


async def test_an_escaped_backslash_before_u0000_is_text_and_passes_the_door(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(CF_EVENT, content=b'{"x": "\\\\u0000"}', headers=JSON)

    assert_passed_the_door(response)
