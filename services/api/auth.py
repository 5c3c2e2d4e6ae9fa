"""Bearer and `Token token=` authentication; each token sees only its own accounts."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request


@dataclass(frozen=True)
class Principal:
    accounts: frozenset[str]

    def may_see(self, account_id: str) -> bool:
        return "*" in self.accounts or account_id in self.accounts


def _token_from(header: str) -> str | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    if scheme.lower() == "token" and rest.strip().startswith("token="):
        return rest.strip()[len("token=") :].strip().strip('"') or None
    return None


def authenticate(request: Request) -> Principal:
    tokens: dict[str, frozenset[str]] = request.app.state.tokens
    token = _token_from(request.headers.get("authorization", ""))
    if token is None or token not in tokens:
        raise HTTPException(
            status_code=401,
            detail="missing or unknown token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(tokens[token])
