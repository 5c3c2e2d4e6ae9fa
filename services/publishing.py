"""Publishing raw JSON commands with the right Kafka key: what any producer must do; and
`flowledger publish`, which waits for each command's reply (through `flowledger.client`)."""

from __future__ import annotations

import json
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaProducer

from contracts.keys import raw_command_key


async def publish_lines(bootstrap: str, topic: str, text: str) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    keys = []
    try:
        for line in filter(None, (raw.strip() for raw in text.splitlines())):
            try:
                key = raw_command_key(json.loads(line))
            except (json.JSONDecodeError, AttributeError):
                key = "unparsed"  # sent anyway: the service dead-letters it with the reason
            await producer.send_and_wait(topic, line.encode(), key=key.encode())
            keys.append(key)
    finally:
        await producer.stop()
    return keys


async def publish_and_wait(
    bootstrap: str,
    topic_prefix: str,
    text: str,
    timeout_s: float,
    emit: Callable[[str], None],
    complain: Callable[[str], None],
) -> bool:
    """Publishes each line in turn and waits for its reply before the next (so a
    registration is applied before the creates that follow it); `emit`s each reply as a JSON
    line. False when a command was rejected or got no reply (`complain`ed about)."""
    from flowledger.client import FlowledgerClient, ReplyTimeout

    all_taken = True
    async with FlowledgerClient(
        bootstrap, topic_prefix=topic_prefix, reply_timeout_s=timeout_s
    ) as client:
        for number, line in enumerate(filter(None, (raw.strip() for raw in text.splitlines())), 1):
            try:
                fields = json.loads(line)
            except json.JSONDecodeError:
                fields = None
            command_id = fields.get("command_id") if isinstance(fields, dict) else None
            key = raw_command_key(fields) if isinstance(fields, dict) else "unparsed"
            if not isinstance(command_id, str) or not command_id:
                # Sent anyway: the service dead-letters it with the reason, but cannot answer.
                await client.publish_raw(line.encode(), key)
                complain(f"line {number}: no command_id, so no reply: dead-lettered (key={key})")
                all_taken = False
                continue
            try:
                reply = await client.send_raw(line.encode(), key, command_id)
            except (ReplyTimeout, ValueError) as error:
                complain(f"line {number}: {error}")
                all_taken = False
                continue
            emit(msgspec.json.encode(reply).decode())
            all_taken = all_taken and reply.outcome != "rejected"
    return all_taken
