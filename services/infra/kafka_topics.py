"""Topics the service declares at start-up, against whatever broker it is given.

A runtime adapter: every role calls :func:`ensure_topics` when it starts, in production as in
development. Provisioning a broker for development and tests is elsewhere
(``services/dev_provisioning/kafka.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = ["KafkaTopicsError", "TopicConfigs", "declare_topics", "ensure_topics"]

_log = logging.getLogger(__name__)


class KafkaTopicsError(RuntimeError):
    """A declared topic cannot be had as declared: other partitions, or not ready in time."""


TopicConfigs = Mapping[str, Mapping[str, str]]


async def ensure_topics(
    bootstrap: str, topics: dict[str, int], configs: TopicConfigs | None = None
) -> None:
    """Create ``topics`` (name -> partition count) unless they exist; wait until they are usable.

    An existing topic with another partition count is an error: keys would hash to other partitions
    than the code that declares them expects. ``configs`` (name -> topic config) are set at
    creation, and on a topic that already exists with other values (e.g. created by an older
    version), keeping whatever else was set on it.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await declare_topics(admin, topics, timeout=30.0, configs=configs or {})
        if configs:
            await _reconcile_configs(admin, configs)
    finally:
        await admin.close()


async def _create_topics(admin: AIOKafkaAdminClient, new: list[NewTopic], deadline: float) -> Any:
    """create_topics, once the cluster's metadata names a controller: right after a broker
    starts it may not, and aiokafka then fails with AttributeError instead of a Kafka error."""
    while True:
        try:
            return await admin.create_topics(new)
        except AttributeError as error:
            if time.monotonic() > deadline:
                raise KafkaTopicsError(
                    f"the cluster named no controller in time ({error})"
                ) from None
            await asyncio.sleep(0.2)


async def declare_topics(
    admin: AIOKafkaAdminClient,
    topics: dict[str, int],
    *,
    timeout: float,
    configs: TopicConfigs | None = None,
) -> None:
    """Create ``topics`` through ``admin`` unless they exist; wait at most ``timeout`` seconds
    until each has its declared partitions, every one with a leader."""
    configs = configs or {}  # the local broker's readiness probe declares none
    deadline = time.monotonic() + timeout
    new = [
        NewTopic(name, partitions, 1, topic_configs=dict(configs.get(name, {})))
        for name, partitions in topics.items()
    ]
    response = await _create_topics(admin, new, deadline)
    for name, code, *message in response.topic_errors:
        error = for_code(code)
        if code and error is not TopicAlreadyExistsError:
            raise error(f"creating topic {name}: {message[0] if message else ''}")
    while True:
        # Metadata for all topics: naming them would let the broker auto-create a missing one.
        described = {t["topic"]: t for t in await admin.describe_topics()}
        pending = []
        for name, partitions in topics.items():
            parts = described.get(name, {}).get("partitions", [])
            if parts and len(parts) != partitions:
                raise KafkaTopicsError(
                    f"topic {name} exists with {len(parts)} partitions, {partitions} declared"
                )
            if len(parts) != partitions or any(p["leader"] < 0 for p in parts):
                pending.append(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise KafkaTopicsError(f"topics not ready after {timeout:.0f}s: {pending}")
        await asyncio.sleep(0.1)


_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs v1+ config_source: set on the topic itself


async def _reconcile_configs(admin: AIOKafkaAdminClient, configs: TopicConfigs) -> None:
    """Sets declared configs that differ on existing topics. AlterConfigs replaces a topic's
    whole set of overrides, so each topic's current overrides are sent along. Best effort: a
    cluster may not let this client alter topics, which is no reason not to start, so a
    failure is logged for the operator to set the values instead."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in configs]
    changes = []
    for response in await admin.describe_configs(resources):
        for error_code, message, _type, name, entries, *_ in response.resources:
            declared = dict(configs.get(name, {}))
            if error_code:
                _log.warning(
                    "topic %s: cannot read its configs to set %s: %s", name, declared, message
                )
                continue
            current = _overrides(entries, response.API_VERSION)
            if current is not None and any(current.get(k) != v for k, v in declared.items()):
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, current | declared))
    if not changes:
        return
    for response in await admin.alter_configs(changes):
        for error_code, message, _type, name, *_ in response.resources:
            if error_code:
                _log.warning("topic %s: cannot set its declared configs: %s", name, message)
            else:
                _log.info("topic %s: set its declared configs %s", name, dict(configs[name]))


def _overrides(entries: list[Any], version: int) -> dict[str, str] | None:
    """A topic's own config values; None when one is sensitive (its value is not returned,
    so it could not be sent back: leave such a topic alone)."""
    overrides = {}
    for name, value, _read_only, default_or_source, sensitive, *_ in entries:
        own = not default_or_source if version == 0 else default_or_source == _DYNAMIC_TOPIC_CONFIG
        if own and (sensitive or value is None):
            _log.warning("topic config %s is sensitive: not reconciling the topic's configs", name)
            return None
        if own:
            overrides[name] = value
    return overrides
