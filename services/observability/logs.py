"""Log lines, set up in one place for every entry point (the service, its supervisor, the
worker, the CLI, `make run`): text by default; FLOWLEDGER_LOG_FORMAT=json makes each line one
JSON object that carries the `instance_key` and `command_id` of the record when there is one,
for log shippers. Repeated lines are limited (log_limits.py)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from services.observability.log_limits import limit_repeats

# Libraries whose INFO lines say nothing an operator needs.
NOISY = ("aiokafka", "faststream", "kafka")

# `extra` fields a log record may carry; JSON lines include those present.
CONTEXT_FIELDS = (
    "role",
    "instance_key",
    "command_id",
    "outcome",
    "code",
    "partition",
    "offset",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(log_format: str, role: str | None = None) -> None:
    """The root handler (installed here when there is none) in the chosen format, and
    uvicorn's logs through it; safe to call again (`serve` adds its role).
    `role`: a supervised child's, on every line, since the children share one output."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in root.handlers:
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        elif role is not None:
            handler.setFormatter(
                logging.Formatter(TEXT_FORMAT.replace("%(name)s", "[%(role)s] %(name)s"))
            )
        if role is not None:
            handler.addFilter(_RoleTag(role))
    limit_repeats(root.handlers)


class _RoleTag(logging.Filter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        return True
