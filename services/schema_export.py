"""Generates schemas/ from the contracts and the apps; a test fails when the files drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from contracts.commands import COMMAND_TYPES
from contracts.events import EVENT_TYPES
from contracts.replies import Reply
from contracts.topics import Topics


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _schema(struct: type) -> dict[str, Any]:
    return msgspec.json.schema(struct)


def asyncapi() -> dict[str, Any]:
    topics = Topics("{prefix}")

    def ref(kind: str, name: str) -> dict[str, str]:
        return {"$ref": f"{kind}/{name}.json"}

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Flowledger",
            "version": "0.1.0",
            "description": "Key every message by the instance key {account_id}/{workflow_name}/"
            "{instance_id} ({account_id}/{workflow_name} for RegisterWorkflow and "
            "CreateInstances; the command_id for a CreateInstance without instance_id).",
        },
        "channels": {
            "commands": {
                "address": topics.commands,
                "messages": {
                    t.__name__: {"payload": ref("commands", t.__name__)} for t in COMMAND_TYPES
                },
            },
            "replies": {
                "address": topics.replies,
                "messages": {"Reply": {"payload": ref(".", "reply")}},
            },
            "events": {
                "address": topics.events,
                "messages": {
                    t.__name__: {"payload": ref("events", t.__name__)} for t in EVENT_TYPES
                },
            },
            "dead_letters": {
                "address": topics.dead_letters,
                "messages": {
                    "DeadLetter": {
                        "description": "The original bytes; headers x-flowledger-reason, "
                        "-source-topic, -source-partition, -source-offset."
                    }
                },
            },
        },
    }


def openapi() -> dict[str, Any]:
    from services.api.app import create_api

    api = create_api(tokens={}, views={}, readiness=lambda: {"ready": True})
    return api.openapi()


def render() -> dict[str, str]:
    files = {f"commands/{t.__name__}.json": _dump(_schema(t)) for t in COMMAND_TYPES}
    files |= {f"events/{t.__name__}.json": _dump(_schema(t)) for t in EVENT_TYPES}
    files["reply.json"] = _dump(_schema(Reply))
    files["asyncapi.json"] = _dump(asyncapi())
    files["openapi.json"] = _dump(openapi())
    return files


def write_schemas(out: Path) -> list[Path]:
    written = []
    for name, text in render().items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
