"""Waiting for a fresh broker's group coordinator before a consumer group joins.

A broker that has just started creates `__consumer_offsets` on the first group lookup, and
until that topic has a leader every lookup fails with GroupCoordinatorNotAvailable, which
aiokafka's consumer logs at ERROR. Asking first (and saying so once, at INFO) keeps the first
screen of `make run` free of errors that are only a broker warming up.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorNotAvailableError, KafkaError, for_code

log = logging.getLogger(__name__)


async def await_group_coordinator(bootstrap: str, group_id: str, limit_s: float = 60.0) -> None:
    """Returns once the broker names a coordinator for `group_id`, or after `limit_s` (the
    consumer then retries by itself, as it would have without this wait)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    said = False
    deadline = asyncio.get_running_loop().time() + limit_s
    try:
        while True:
            try:
                await admin.find_coordinator(group_id)
                # Named is not yet serving: it may still be loading the offsets partition.
                (response,) = await admin.describe_consumer_groups([group_id])
                error_code = response.groups[0][0]
                if error_code == 0:
                    return
                raise for_code(error_code)(f"group {group_id}")
            except (CoordinatorNotAvailableError, KafkaError) as error:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("no group coordinator for %s yet: %s", group_id, error)
                    return
                if not said:
                    log.info("waiting for the broker's group coordinator (%s)", group_id)
                    said = True
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
