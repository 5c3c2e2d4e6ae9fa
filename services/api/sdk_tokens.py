"""Onfido `sdk_token`s: a signed token that reads one workflow run and nothing else.

Stateless (an HMAC over the account and run id), so every api replica configured with the
same secret accepts the tokens any of them minted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "sdk_"


def mint(secret: str, account_id: str, run_id: str) -> str:
    payload = f"{account_id}\n{run_id}".encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{PREFIX}{body}.{_signature(secret, payload)}"


def verify(secret: str, token: str) -> tuple[str, str] | None:
    """(account_id, run_id) when `token` is one `mint` made with `secret`, else None."""
    if not token.startswith(PREFIX) or "." not in token:
        return None
    body, _, signature = token[len(PREFIX) :].partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        return None
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return None
    account_id, _, run_id = payload.decode(errors="replace").partition("\n")
    return account_id, run_id


def _signature(secret: str, payload: bytes) -> str:
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
