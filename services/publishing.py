"""Publishing raw JSON commands with the right Kafka key: what any producer must do."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer

from contracts.keys import command_fields_key


def command_key(command: dict[str, object]) -> str:
    """`contracts.keys.kafka_key` of a raw JSON command, which need not be a valid one (a
    producer's line, a test's record): the key a valid command of these fields would have."""
    instance_id = command.get("instance_id")
    return command_fields_key(
        str(command.get("type")),
        str(command.get("account_id")),
        str(command.get("workflow_name")),
        str(instance_id) if instance_id else None,
        str(command.get("command_id")),
    )


async def publish_lines(bootstrap: str, topic: str, text: str) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    keys = []
    try:
        for line in filter(None, (raw.strip() for raw in text.splitlines())):
            try:
                key = command_key(json.loads(line))
            except (json.JSONDecodeError, AttributeError):
                key = "unparsed"  # sent anyway: the service dead-letters it with the reason
            await producer.send_and_wait(topic, line.encode(), key=key.encode())
            keys.append(key)
    finally:
        await producer.stop()
    return keys
