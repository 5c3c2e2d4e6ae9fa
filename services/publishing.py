"""Publishing raw JSON commands with the right Kafka key: what any producer must do."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer

from contracts.keys import instance_key, workflow_key


def command_key(command: dict[str, object]) -> str:
    """The instance key; the workflow key for RegisterWorkflow; the command_id for a minted id."""
    account, workflow = str(command.get("account_id")), str(command.get("workflow_name"))
    if command.get("type") == "RegisterWorkflow" or command.get("type") == "CreateInstances":
        return workflow_key(account, workflow)
    if command.get("instance_id"):
        return instance_key(account, workflow, str(command["instance_id"]))
    return str(command.get("command_id"))


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
