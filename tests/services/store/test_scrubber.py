"""The scrubber that runs after erasures: off the caller's thread, retried until it finishes,
then again at its follow-ups (real threads; deadlines only for waiting)."""

from __future__ import annotations

import threading
import time

from services.store.key_table import Scrubber
from tests.fixtures.deadline import DEADLINE_S


class Recorder:
    """A scrub that fails `failures` times, then succeeds; counts its calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.thread_names: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        with self.lock:
            self.calls += 1
            self.thread_names.add(threading.current_thread().name)
            return self.calls > self.failures


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_requested_scrub_runs_on_its_own_thread() -> None:
    scrub = Recorder()
    Scrubber(scrub).request()

    _until(lambda: scrub.calls >= 1, "the scrub ran")
    assert scrub.thread_names == {"erasure-scrub"}


def test_a_scrub_that_could_not_finish_is_tried_again_until_it_does() -> None:
    scrub = Recorder(failures=2)
    Scrubber(scrub).request()

    _until(lambda: scrub.calls >= 3, "the scrub was retried until it finished")


def test_a_finished_scrub_runs_again_at_its_follow_ups_without_a_new_request() -> None:
    scrub = Recorder()
    Scrubber(scrub, follow_ups=(0.05, 0.1)).request()

    _until(lambda: scrub.calls >= 3, "both follow-ups ran")


def test_a_scrub_that_raises_is_retried_not_fatal() -> None:
    calls: list[int] = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the store is away")
        return True

    Scrubber(flaky).request()
    _until(lambda: len(calls) >= 2, "the scrub ran again after raising")
