"""Who is asking, for the console: a server-side session named by the cookie, or the api token
of an Authorization header, and the CSRF token that every state-changing form must carry.

* The cookie holds a random session id (`secrets.token_urlsafe`, 256 bits) and nothing else:
  HttpOnly, SameSite=Strict, Path=/console, Secure when the console is served over HTTPS.
  The token never appears in a cookie or a URL.
* The session lives in a table beside the event store (`services/store/session_table.py`),
  rather than in a signed cookie with a revocation list: every api replica sees a sign-out at
  once without a second shared structure, and a session id is refused unless a sign-in made
  it. The row keeps the SHA-256 of the id and the digest of the token that signed in; each
  request looks the token up again among the configured api tokens (`ApiTokens`), so a token
  removed from the configuration ends its sessions at once.
* A session ends at sign-out (its row is deleted), after `idle_s` without a request, or
  `absolute_s` after sign-in, whichever comes first. The time of the last request is written
  at most once a `touch_every_s`, so the live view's polling does not write on every poll.
* CSRF: a form's token is HMAC-SHA256(secret, session id), with the secret every api replica
  shares (`FLOWLEDGER_SDK_TOKEN_SECRET`); a POST authenticated by the cookie must carry it. A
  request authenticated by an `Authorization` header (a script) needs none: no browser adds
  that header to a request another site makes.
* Signing in is protected the same way, before there is a session, by a double-submit token: a
  random value in a short-lived cookie and the same value in the sign-in form.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from fastapi import Request, Response

from services.api.auth import ApiTokens, Principal, token_digest
from services.console.sign_in_limit import SignInLimiter
from services.store.session_table import StoredSession

SESSION_COOKIE = "flowledger_console"
SIGN_IN_COOKIE = "flowledger_console_sign_in"
COOKIE_PATH = "/console"
SIGN_IN_MAX_AGE_S = 3600
MAX_TOKEN_CHARS = 4096  # a longer "token" is no token: refused before it is hashed
SESSION_ID_BYTES = 32
_SESSION_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 8 * 3600.0
    absolute_s: float = 24 * 3600.0
    touch_every_s: float = 60.0


class SessionStore(Protocol):
    """Where sessions live (`SessionTable`); its calls do I/O: run them off the event loop."""

    def add(self, id_hash: str, token_digest: str, now_ms: int) -> None: ...

    def get(self, id_hash: str) -> StoredSession | None: ...

    def touch(self, id_hash: str, now_ms: int) -> None: ...

    def delete(self, id_hash: str) -> None: ...

    def purge(self, seen_before_ms: int, created_before_ms: int) -> None: ...


@dataclass
class ConsoleSessions:
    """The console's session state on the api's `state` (`state.console_sessions`): the store
    is set by the api role once it has opened the table; without one, signing in answers 503
    and only the Authorization header works. `clock` is injectable for tests."""

    store: SessionStore | None = None
    policy: SessionPolicy = field(default_factory=SessionPolicy)
    clock: Callable[[], float] = time.time
    sign_in_limiter: SignInLimiter = field(default_factory=SignInLimiter)

    def now_ms(self) -> int:
        return round(self.clock() * 1000)


@dataclass(frozen=True)
class Session:
    principal: Principal
    via: Literal["cookie", "header"]
    csrf_token: str  # "" for header-authenticated requests, which need none


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def csrf_for(secret: str, session_id: str) -> str:
    message = b"flowledger-console-csrf\x00" + session_id.encode()
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


def accounts_of(tokens: ApiTokens, token: str) -> frozenset[str] | None:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return tokens.accounts_of(token)


class Unauthenticated(Exception):
    """No valid credentials: a page sends the browser to sign in; a bad header is a 401."""

    def __init__(self, *, bad_header: bool) -> None:
        super().__init__("not signed in")
        self.bad_header = bad_header


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _well_formed(session_id: str) -> bool:
    return 20 <= len(session_id) <= 100 and set(session_id) <= _SESSION_ID_CHARS


def expired(stored: StoredSession, policy: SessionPolicy, now_ms: int) -> bool:
    return (
        now_ms - stored.seen_ms >= policy.idle_s * 1000
        or now_ms - stored.created_ms >= policy.absolute_s * 1000
    )


def resolve(
    store: SessionStore,
    tokens: ApiTokens,
    policy: SessionPolicy,
    session_id: str,
    now_ms: int,
) -> frozenset[str] | None:
    """The accounts of the live session `session_id`; None for one that does not exist, has
    expired (then deleted) or whose token is no longer configured (deleted too)."""
    if not _well_formed(session_id):
        return None
    id_hash = _id_hash(session_id)
    stored = store.get(id_hash)
    if stored is None:
        return None
    try:
        digest = bytes.fromhex(stored.token_digest)
    except ValueError:
        digest = b""
    accounts = None if expired(stored, policy, now_ms) else tokens.accounts_of_digest(digest)
    if accounts is None:
        store.delete(id_hash)
    elif now_ms - stored.seen_ms >= policy.touch_every_s * 1000:
        store.touch(id_hash, now_ms)
    return accounts


def open_session(store: SessionStore, token: str, policy: SessionPolicy, now_ms: int) -> str:
    """A new session for `token` (already checked); its id, for the cookie. Sessions that
    have expired meanwhile are deleted on the way: sign-ins keep the table small."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    store.add(_id_hash(session_id), token_digest(token).hex(), now_ms)
    store.purge(round(now_ms - policy.idle_s * 1000), round(now_ms - policy.absolute_s * 1000))
    return session_id


def close_session(store: SessionStore, session_id: str) -> None:
    if _well_formed(session_id):
        store.delete(_id_hash(session_id))


def header_session(request: Request, tokens: ApiTokens) -> Session | None:
    """The session of a request with an `Authorization` header (401 for a bad one); None for
    a request without one."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    token = bearer_token(header)
    accounts = accounts_of(tokens, token) if token is not None else None
    if accounts is None:
        raise Unauthenticated(bad_header=True)
    return Session(Principal(accounts), "header", "")


def cookie_session_id(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


async def current_session(
    request: Request, tokens: ApiTokens, secret: str, console: ConsoleSessions
) -> Session:
    """The header's session, else the cookie's; Unauthenticated when there is neither."""
    by_header = header_session(request, tokens)
    if by_header is not None:
        return by_header
    session_id = cookie_session_id(request)
    if console.store is None or not session_id:
        raise Unauthenticated(bad_header=False)
    accounts = await asyncio.to_thread(
        resolve, console.store, tokens, console.policy, session_id, console.now_ms()
    )
    if accounts is None:
        raise Unauthenticated(bad_header=False)
    return Session(Principal(accounts), "cookie", csrf_for(secret, session_id))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    if session.via == "header":
        return True
    return bool(submitted) and hmac.compare_digest(
        session.csrf_token.encode(), (submitted or "").encode("utf-8", "surrogatepass")
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(
    request: Request, response: Response, session_id: str, policy: SessionPolicy
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(policy.absolute_s),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)


def clear_session_cookie(response: Response) -> None:
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
