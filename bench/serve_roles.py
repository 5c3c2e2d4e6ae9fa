"""`python -m bench.serve_roles relay,projections,api`: the service's own `serve`, several roles.

`flowledger serve --role` takes one role or all; the two-member topology needs the followers and
the api in one process beside two commands-only processes, so this runs the very same
`services.server.serve` with a list of roles.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from services.bootstrap import ROLES
from services.server import serve
from services.settings import Settings


def main(argv: list[str]) -> int:
    roles = tuple(role for role in (argv[0] if argv else "").split(",") if role)
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        print(f"usage: python -m bench.serve_roles ROLE[,ROLE...] (of {', '.join(ROLES)})")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "faststream", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(Settings(), roles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
