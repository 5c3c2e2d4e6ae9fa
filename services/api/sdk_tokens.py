"""Onfido `sdk_token`s: a signed token that reads one workflow run and nothing else, until it
expires.

Stateless (an HMAC over the account, the run id and the expiry time), so every api replica
configured with the same secret accepts the tokens any of them minted. A token is
`sdk_<base64url(account \\n run \\n expires-at unix seconds)>.<base64url(HMAC-SHA256)>`.
Whatever a client sends in its place, `verify` answers None, never raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time

PREFIX = "sdk_"
DEFAULT_TTL_S = 3600.0
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")


def mint(
    secret: str,
    account_id: str,
    run_id: str,
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    expires_at = int((time.time() if now is None else now) + ttl_s)
    payload = f"{account_id}\n{run_id}\n{expires_at}".encode()
    return f"{PREFIX}{_b64(payload)}.{_b64(_signature(secret, payload))}"


def verify(secret: str, token: str, now: float | None = None) -> tuple[str, str] | None:
    """(account_id, run_id) when `token` is one `mint` made with `secret` and it has not
    expired, else None."""
    if not token.startswith(PREFIX) or not token.isascii():
        return None
    body, dot, signature = token[len(PREFIX) :].partition(".")
    payload, signed = _unb64(body), _unb64(signature)
    if not dot or payload is None or signed is None:
        return None
    if not hmac.compare_digest(signed, _signature(secret, payload)):
        return None
    try:
        account_id, run_id, expires = payload.decode().split("\n")
        expires_at = int(expires)
    except ValueError:  # a token minted before tokens expired: refused like a stranger's
        return None
    if (time.time() if now is None else now) >= expires_at:
        return None
    return account_id, run_id


def _signature(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes | None:
    # Characters outside the URL-safe alphabet are refused, where the decoder would skip them.
    if not _URLSAFE.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return None
