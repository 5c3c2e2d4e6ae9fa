"""Bearer and `Token token=` authentication; each token sees only its own accounts.

Whatever arrives in the header (any length, any characters, any encoding) ends in a Principal
or a 401: nothing here raises anything else.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import HTTPException, Request

from services.api import sdk_tokens


@dataclass(frozen=True)
class Principal:
    accounts: frozenset[str]
    run_id: str | None = None  # set for an Onfido sdk_token: that one run and nothing else

    def may_see(self, account_id: str) -> bool:
        if self.run_id is not None:
            return False
        return "*" in self.accounts or account_id in self.accounts

    def may_read_run(self, account_id: str, run_id: str) -> bool:
        if self.run_id is not None:
            return self.run_id == run_id and account_id in self.accounts
        return self.may_see(account_id)

    def sole_account(self) -> str | None:
        """The one account a token is bound to; None for '*' and multi-account tokens."""
        if len(self.accounts) == 1 and "*" not in self.accounts:
            return next(iter(self.accounts))
        return None


def _token_from(header: str) -> str | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    if scheme.lower() == "token" and rest.strip().startswith("token="):
        return rest.strip()[len("token=") :].strip().strip('"') or None
    return None


class ApiTokens:
    """The configured api tokens, checked in constant time.

    Each is kept as its SHA-256 digest, and a presented token's digest is compared with every
    one of them by `hmac.compare_digest`, without stopping at a match: how long a check takes
    depends on how many tokens are configured, never on how much of one a guess got right.
    (Comparing digests, not the tokens, also makes the comparison independent of length.)
    """

    def __init__(self, tokens: Mapping[str, frozenset[str]]) -> None:
        self._digests = [(token_digest(token), accounts) for token, accounts in tokens.items()]

    def accounts_of(self, token: str) -> frozenset[str] | None:
        return self.accounts_of_digest(token_digest(token))

    def accounts_of_digest(self, presented: bytes) -> frozenset[str] | None:
        """The accounts of the token with this digest: a console session keeps the digest of
        the token that signed in, never the token."""
        found = None
        for digest, accounts in self._digests:
            if hmac.compare_digest(digest, presented):
                found = accounts
        return found


def token_digest(token: str) -> bytes:
    # surrogatepass: any str encodes, and distinct ones stay distinct.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def authenticate(request: Request) -> Principal:
    token = _token_from(request.headers.get("authorization", ""))
    if token is not None:
        tokens: ApiTokens = request.app.state.api_tokens
        accounts = tokens.accounts_of(token)
        if accounts is not None:
            return Principal(accounts)
        scoped = sdk_tokens.verify(request.app.state.sdk_secret, token)
        if scoped is not None:
            return Principal(frozenset({scoped[0]}), run_id=scoped[1])
    raise HTTPException(
        status_code=401,
        detail="missing, malformed, unknown or expired token: send 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def acting_account(caller: Principal, account_id: str | None) -> str:
    """The account a request acts in, for APIs whose paths name none (Onfido, /v1): the
    token's sole account, or for '*' and multi-account tokens the `account_id` it names."""
    chosen = account_id or caller.sole_account()
    if chosen is None:
        raise HTTPException(
            status_code=422, detail="this token sees several accounts: pass ?account_id="
        )
    if not caller.may_see(chosen):
        raise HTTPException(status_code=404, detail="account not found")
    return chosen
