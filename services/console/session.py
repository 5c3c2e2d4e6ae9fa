"""Who is asking, for the console: an api token from the session cookie or the Authorization
header, and the CSRF token that every state-changing form must carry.

* The cookie holds `<session id>.<base64url(api token)>`: HttpOnly (scripts never read it),
  SameSite=Strict (no other site's page can make the browser send it), Path=/console, Secure
  when the console is served over HTTPS. The token never appears in a URL.
* Each request checks the token again against the configured api tokens (`ApiTokens`, constant
  time): there is no server-side session, so any api replica answers any request, and a token
  removed from the configuration stops working at once.
* CSRF: a form's token is HMAC-SHA256(secret, session id, api token), with the secret every api
  replica shares (`FLOWLEDGER_SDK_TOKEN_SECRET`); a POST authenticated by the cookie must carry
  it. A request authenticated by an `Authorization` header (a script) needs none: no browser
  adds that header to a request another site makes.
* Signing in is protected the same way, before there is a session, by a double-submit token: a
  random value in a short-lived cookie and the same value in the sign-in form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from fastapi import Request, Response

from services.api.auth import ApiTokens, Principal

SESSION_COOKIE = "flowledger_console"
SIGN_IN_COOKIE = "flowledger_console_sign_in"
COOKIE_PATH = "/console"
SESSION_MAX_AGE_S = 12 * 3600
SIGN_IN_MAX_AGE_S = 3600
MAX_TOKEN_CHARS = 4096  # a longer "token" is no token: refused before it is hashed


@dataclass(frozen=True)
class Session:
    principal: Principal
    via: Literal["cookie", "header"]
    csrf_token: str  # "" for header-authenticated requests, which need none


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes | None:
    try:
        padded = (text + "=" * (-len(text) % 4)).encode("ascii")
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


def csrf_for(secret: str, session_id: str, token: str) -> str:
    message = b"flowledger-console-csrf\x00" + session_id.encode() + b"\x00" + token.encode()
    return _b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` or `Token token=<token>` header."""
    scheme, _, rest = header.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return rest
    if scheme.lower() == "token" and rest.startswith("token="):
        return rest[len("token=") :].strip().strip('"') or None
    return None


def cookie_value(session_id: str, token: str) -> str:
    return f"{session_id}.{_b64encode(token.encode('utf-8', 'surrogatepass'))}"


def parse_cookie(value: str) -> tuple[str, str] | None:
    session_id, dot, encoded = value.partition(".")
    if not dot or not session_id or len(value) > 2 * MAX_TOKEN_CHARS:
        return None
    raw = _b64decode(encoded)
    if raw is None:
        return None
    try:
        return session_id, raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def accounts_of(tokens: ApiTokens, token: str) -> frozenset[str] | None:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return tokens.accounts_of(token)


class Unauthenticated(Exception):
    """No valid credentials: a page sends the browser to sign in; a bad header is a 401."""

    def __init__(self, *, bad_header: bool) -> None:
        super().__init__("not signed in")
        self.bad_header = bad_header


def current_session(request: Request, tokens: ApiTokens, secret: str) -> Session:
    header = request.headers.get("authorization")
    if header is not None:
        token = bearer_token(header)
        accounts = accounts_of(tokens, token) if token is not None else None
        if accounts is None:
            raise Unauthenticated(bad_header=True)
        return Session(Principal(accounts), "header", "")
    parsed = parse_cookie(request.cookies.get(SESSION_COOKIE, ""))
    if parsed is not None:
        session_id, token = parsed
        accounts = accounts_of(tokens, token)
        if accounts is not None:
            return Session(Principal(accounts), "cookie", csrf_for(secret, session_id, token))
    raise Unauthenticated(bad_header=False)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    if session.via == "header":
        return True
    return bool(submitted) and hmac.compare_digest(
        session.csrf_token.encode(), (submitted or "").encode("utf-8", "surrogatepass")
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def start_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value(secrets.token_urlsafe(16), token),
        max_age=SESSION_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def sign_in_nonce(request: Request) -> str:
    """The double-submit value of the sign-in form: the cookie's, or a new one."""
    current = request.cookies.get(SIGN_IN_COOKIE, "")
    return current if 20 <= len(current) <= 64 and current.isascii() else secrets.token_urlsafe(24)


def keep_sign_in_nonce(request: Request, response: Response, nonce: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=SIGN_IN_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def sign_in_nonce_ok(request: Request, submitted: str | None) -> bool:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    return bool(expected) and hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"),
        (submitted or "").encode("utf-8", "surrogatepass"),
    )
