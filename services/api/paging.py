"""Opaque list cursors: the position after the last document a page showed."""

from __future__ import annotations

import base64
import json

from fastapi import HTTPException


def encode_cursor(created_at: str, key: str) -> str:
    raw = json.dumps([created_at, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, key = json.loads(raw)
        if isinstance(created_at, str) and isinstance(key, str):
            return created_at, key
    except (ValueError, TypeError):
        pass
    raise HTTPException(status_code=400, detail="cursor is not one this API handed out")
