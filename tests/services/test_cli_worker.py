"""`flowledger worker` logs as the service does: FLOWLEDGER_LOG_FORMAT=json makes each line one
JSON object (the service's own formatter, services/server.py)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from services import cli


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_worker_honours_the_log_format(
    log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    monkeypatch.setenv("FLOWLEDGER_LOG_FORMAT", log_format)
    monkeypatch.setenv("FLOWLEDGER_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached

    async def run_worker(*args: Any) -> None:
        logging.getLogger("flowledger.worker").warning("worker stopping")

    monkeypatch.setattr("services.worker.process.run_worker", run_worker)
    assert cli.main(["worker", "examples.checkout:Checkout", "--workflow", "checkout"]) == 0
    written = handler.stream.getvalue().strip()
    if log_format == "json":
        line = json.loads(written)
        assert (line["logger"], line["message"]) == ("flowledger.worker", "worker stopping")
    else:
        assert written == "worker stopping"  # the handler's own format, left alone


def test_a_missing_class_is_refused_before_anything_connects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["worker", "examples.checkout:Nope", "--workflow", "checkout"]) == 2
    assert "module 'examples.checkout' has no attribute 'Nope'" in capsys.readouterr().err
