"""``FLOWLEDGER_STORE`` URL -> the ``eventsourcing`` library's persistence settings.

The library is configured through an environment mapping (``Application(env=...)``); keeping the
translation in one place means every role and every test configures the store the same way.
Variable names are those read by ``eventsourcing.sqlite.SQLiteFactory`` and
``eventsourcing.postgres.BasePostgresFactory`` (eventsourcing 9.5).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_MAX_OVERFLOW", "STORED_FORMAT", "eventsourcing_env"]

# One process runs several roles (commands, relay, projections, api), each with its own
# Application and so its own pool; a few threads each, so a small pool with headroom is
# enough, and 4 roles x (4 + 4) stays far below a default max_connections of 100.
DEFAULT_POOL_SIZE = 4
DEFAULT_MAX_OVERFLOW = 4

# Query parameters we understand; anything else (sslmode, options...) is refused rather than
# silently dropped, since the library's factory has no way to pass it on to libpq.
_POSTGRES_QUERY_KEYS = {
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
    "schema": "POSTGRES_SCHEMA",
    "pre_ping": "POSTGRES_PRE_PING",
}


# How events are written, on every backend: JSON whose tags clients cannot forge.
# Read with msgspec (issue 17): the bytes are the same as TaggedJSONTranscoder's.
STORED_FORMAT = {"TRANSCODER_TOPIC": "services.store.transcoder:TaggedMsgspecTranscoder"}


def eventsourcing_env(store_url: str) -> dict[str, str]:
    """Settings for ``eventsourcing.application.Application(env=...)`` from a store URL.

    ``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` select the SQLite module;
    ``postgresql://user[:password]@host[:port]/dbname[?pool_size=N&max_overflow=N&schema=S]``
    (``postgres://`` too) selects the PostgreSQL module.
    """
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite":
        return {**_sqlite_env(store_url), **STORED_FORMAT}
    if parts.scheme in ("postgresql", "postgres"):
        return {**_postgres_env(store_url), **STORED_FORMAT}
    raise ValueError(
        f"unsupported store URL scheme {parts.scheme!r} in {_redacted(store_url)!r}: "
        "use sqlite:///path.db or postgresql://user@host:port/dbname"
    )


def _sqlite_env(store_url: str) -> dict[str, str]:
    parts = urlsplit(store_url)
    if parts.netloc:
        # sqlite://name/x.db would otherwise quietly drop "name"; three slashes are required.
        raise ValueError(
            f"SQLite store URL {store_url!r} has a host part: use sqlite:///relative.db "
            "or sqlite:////absolute/path.db"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"SQLite store URL {store_url!r} takes no query or fragment")
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise ValueError(f"SQLite store URL {store_url!r} names no database file")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": path,
        "CREATE_TABLE": "y",
    }


def _postgres_env(store_url: str) -> dict[str, str]:
    parts = urlsplit(store_url)
    shown = _redacted(store_url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"PostgreSQL store URL {shown!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"PostgreSQL store URL {shown!r} needs a host")
    if not parts.username:
        raise ValueError(f"PostgreSQL store URL {shown!r} needs a user")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError(f"PostgreSQL store URL {shown!r} needs a database name")

    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parts.username),
        # The library refuses a missing POSTGRES_PASSWORD but accepts "": with trust or peer
        # authentication libpq then simply sends none.
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(DEFAULT_POOL_SIZE),
        "POSTGRES_MAX_OVERFLOW": str(DEFAULT_MAX_OVERFLOW),
        # No ping on every checkout: it doubles the round trips of the hot path, and the
        # library already retries a statement that fails on a dead pooled connection.
        # `?pre_ping=y` turns it on for networks that cut idle connections silently.
        "POSTGRES_PRE_PING": "n",
        # Seconds to wait for a connection (the library's default is 30): while the server is
        # away, each store call fails after this, so followers back off and readiness says so.
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "CREATE_TABLE": "y",
    }
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _POSTGRES_QUERY_KEYS:
            raise ValueError(
                f"PostgreSQL store URL {shown!r}: unsupported parameter {key!r} "
                f"(supported: {', '.join(sorted(_POSTGRES_QUERY_KEYS))})"
            )
        if key in ("pool_size", "max_overflow") and not (value.isdigit() and int(value) >= 0):
            raise ValueError(f"PostgreSQL store URL {shown!r}: {key} must be a whole number")
        env[_POSTGRES_QUERY_KEYS[key]] = value
    return env


def _redacted(url: str) -> str:
    """The URL with any password masked, so errors can be logged safely."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
