"""Topic declaration (the runtime adapter every role runs at start-up), against a real broker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.infra.kafka_topics import KafkaTopicsError, declare_topics, ensure_topics


def _topic(purpose: str) -> str:
    return f"test.{purpose}.{uuid.uuid4().hex[:12]}"


async def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["topic"] in topics}


@pytest.mark.kafka
async def test_ensure_topics_is_idempotent_and_keeps_the_declared_partitions(
    kafka_bootstrap: str,
) -> None:
    declared = {_topic("five"): 5, _topic("two"): 2}
    await ensure_topics(kafka_bootstrap, declared)
    await ensure_topics(kafka_bootstrap, declared)
    assert await _partition_counts(kafka_bootstrap, list(declared)) == declared


@pytest.mark.kafka
async def test_ensure_topics_rejects_an_existing_topic_with_other_partitions(
    kafka_bootstrap: str,
) -> None:
    topic = _topic("mismatch")
    await ensure_topics(kafka_bootstrap, {topic: 2})
    with pytest.raises(KafkaTopicsError, match="2 partitions, 4 declared"):
        await ensure_topics(kafka_bootstrap, {topic: 4})


async def _topic_overrides(bootstrap: str, topic: str) -> dict[str, str]:
    """The configs set on the topic itself (not inherited from the broker)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_, _, _, _, entries, *_)] = response.resources
    return {name: value for name, value, _, source, *_ in entries if source == 1}


@pytest.mark.kafka
async def test_ensure_topics_creates_topics_with_their_declared_configs(
    kafka_bootstrap: str,
) -> None:
    topic = _topic("configured")
    await ensure_topics(kafka_bootstrap, {topic: 1}, {topic: {"max.message.bytes": "1114112"}})
    assert (await _topic_overrides(kafka_bootstrap, topic))["max.message.bytes"] == "1114112"


@pytest.mark.kafka
async def test_ensure_topics_sets_declared_configs_on_an_existing_topic_and_keeps_the_rest(
    kafka_bootstrap: str,
) -> None:
    topic = _topic("older")
    await ensure_topics(kafka_bootstrap, {topic: 1}, {topic: {"retention.ms": "3600000"}})
    await ensure_topics(kafka_bootstrap, {topic: 1}, {topic: {"max.message.bytes": "1114112"}})
    overrides = await _topic_overrides(kafka_bootstrap, topic)
    assert overrides == {"retention.ms": "3600000", "max.message.bytes": "1114112"}


class _JustStartedCluster:
    """An admin client of a broker that has just started: its metadata names no controller
    for the first tries, which aiokafka reports as an AttributeError."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def create_topics(self, new: list[Any]) -> Any:
        if self.failures:
            self.failures -= 1
            raise AttributeError("'NoneType' object has no attribute 'nodeId'")
        return type("Response", (), {"topic_errors": [(t.name, 0, None) for t in new]})()

    async def describe_topics(self) -> list[dict[str, Any]]:
        return [{"topic": "t", "partitions": [{"leader": 1}]}]


async def test_topics_are_declared_once_a_just_started_broker_names_its_controller() -> None:
    admin = _JustStartedCluster(failures=2)

    await declare_topics(admin, {"t": 1}, timeout=5.0)  # type: ignore[arg-type]

    assert admin.failures == 0


async def test_a_cluster_that_never_names_a_controller_is_a_clear_error() -> None:
    with pytest.raises(KafkaTopicsError, match="no controller"):
        await declare_topics(_JustStartedCluster(failures=10**6), {"t": 1}, timeout=0.3)  # type: ignore[arg-type]
