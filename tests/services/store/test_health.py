"""Store health is asked off the event loop, and a store that hangs reads as down."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from services.store.health import NO_LAGS, StoreHealth

LAGS: dict[str, Any] = {"notification_head": 3, "relay_lag": 0, "projection_lag": {"v": 1}}


async def test_an_answering_store_is_reachable_with_its_lags() -> None:
    health = StoreHealth(lambda: LAGS)

    assert await health.check() is True
    assert health.reachable and health.lags == LAGS


async def test_a_failing_store_is_down_without_lags_until_it_answers_again() -> None:
    answers: list[Any] = [OSError("connection refused"), LAGS]

    def read() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    health = StoreHealth(read)
    assert await health.check() is False
    assert not health.reachable and health.lags == NO_LAGS
    assert await health.check() is True and health.reachable


async def test_a_hung_store_is_down_and_the_event_loop_keeps_running() -> None:
    release = threading.Event()

    def hangs() -> dict[str, Any]:
        release.wait(30)
        return LAGS

    health = StoreHealth(hangs, timeout_s=0.05)
    check = asyncio.create_task(health.check())
    ticks = 0
    while not check.done():  # the loop is free while the query hangs in its thread
        ticks += 1
        if ticks == 20:
            assert not health.reachable
            release.set()
        await asyncio.sleep(0.01)
    assert await check is False and ticks >= 20
