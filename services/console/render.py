"""Pages from Jinja2 templates, escaped everywhere.

Autoescape is on for every template (not only `.html` names) and nothing is marked safe: step
names, params, outputs, payloads and error messages are whatever a producer sent, and reach the
page as text. JSON values are shown pretty-printed and cut to `MAX_JSON_CHARS` (a params
document may be close to 1 MiB).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from contracts.status import TERMINAL
from services.api.rendering import encode
from services.console.timeline import parse_time

TEMPLATES = Path(__file__).parent / "templates"
MAX_JSON_CHARS = 20_000
MAX_INLINE_JSON_CHARS = 300


def pretty_json(value: Any, limit: int = MAX_JSON_CHARS) -> str:
    text = msgspec.json.format(encode(value), indent=2).decode()
    if len(text) > limit:
        return f"{text[:limit]}\n… [{len(text) - limit} more characters]"
    return text


def inline_json(value: Any, limit: int = MAX_INLINE_JSON_CHARS) -> str:
    text = encode(value).decode()
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def without_nulls(data: Any) -> Any:
    """A history event's fields without those left unset (null): what happened, shortly."""
    if not isinstance(data, dict):
        return data
    return {key: value for key, value in data.items() if value is not None}


def when(value: Any) -> str:
    """A stored timestamp as `YYYY-MM-DD HH:MM:SS.mmm UTC`; '—' when there is none."""
    moment = value if isinstance(value, datetime) else parse_time(value)
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pretty_json"] = pretty_json
_env.filters["inline_json"] = inline_json
_env.filters["when"] = when
_env.filters["without_nulls"] = without_nulls
_env.globals["TERMINAL"] = TERMINAL


def base_path(request: Request) -> str:
    """Where the console is mounted (`/console`, behind any proxy prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render_text(request: Request, template: str, **context: Any) -> str:
    context.setdefault("session", None)
    context.setdefault("crumbs", [])
    return _env.get_template(template).render(base=base_path(request), **context)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render_text(request, template, **context), status_code=status_code)
