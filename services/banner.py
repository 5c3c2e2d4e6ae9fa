"""What runs where, printed once when the service is ready: by `flowledger serve
--single-process` (or one `--role` process) itself, or by the supervisor once every child it
runs said it is ready (services/supervisor.py), so a terminal shows one banner, not one per
role interleaved with their start-up lines."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from services.settings import Settings

log = logging.getLogger("flowledger")


def print_banner(
    settings: Settings,
    bootstrap: str,
    roles: tuple[str, ...],
    dev_token: str | None = None,
    *,
    brief: bool = False,
) -> None:
    """Configured api tokens are secrets and never printed (banners end up in logs); a
    generated dev token is, as it is the only way in. `brief`: only the first line (and the
    ops port), for a process beside an api that prints the rest."""
    lines = banner_lines(settings, bootstrap, roles, dev_token)
    if brief:
        lines = [line for line in lines if line.startswith(("Flowledger is", "  ops:"))]
    if settings.log_format == "json":
        log.info(lines[0])  # log shippers get JSON only; people read the text banner
        return
    print("\n".join(lines), flush=True)  # one write: no other process's line lands inside it


def banner_lines(
    settings: Settings, bootstrap: str, roles: tuple[str, ...], dev_token: str | None
) -> list[str]:
    topics = settings.topics
    lines = [
        f"Flowledger is running (roles: {', '.join(roles)})",
        f"  store:      {_without_password(settings.store)}",
        f"  kafka:      {bootstrap}",
        f"  commands:   {topics.commands}   replies: {topics.replies}",
        f"  events:     {topics.events}   dead letters: {topics.dead_letters}",
    ]
    if "api" in roles:
        lines += _api_lines(settings, dev_token)
    elif settings.ops_port is not None:
        lines += [f"  ops:        http://{settings.http_host}:{settings.ops_port}/metrics"]
    return [
        *lines,
        "  try:        .venv/bin/flowledger instances create checkout --id order-1 "
        "(README, Quick start)",
        "Press Ctrl-C to stop.",
    ]


def _api_lines(settings: Settings, dev_token: str | None) -> list[str]:
    url = f"http://{settings.http_host}:{settings.http_port}"
    if dev_token is not None:
        tokens = f"  token:      {dev_token}  (dev token, every account)"
    else:
        tokens = f"  tokens:     {len(settings.tokens())} from FLOWLEDGER_API_TOKENS"
    return [
        f"  http:       {url}  (health: {url}/healthz)",
        f"  console:    {url}/console  (sign in with the token)",
        tokens,
        f'  sdks:       Cloudflare(api_token=..., base_url="{url}/client/v4"); '
        f'onfido Configuration(api_token=..., host="{url}/v3.6")',
    ]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
