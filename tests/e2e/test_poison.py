"""Poison records over the real broker: each ends as a dead letter or a rejected reply, and
the commands that follow it on the same partition, and their events, still go through."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from contracts.keys import raw_command_key as command_key
from contracts.limits import MAX_ECHO_CHARS, MAX_JSON_BYTES
from tests.fixtures.service import KafkaClient, Received

# Far above a bounded reason (MAX_ECHO_CHARS and the text around it), far below any limit.
BOUNDED = 4 * MAX_ECHO_CHARS


@dataclass
class Poison:
    name: str
    value: bytes
    command_id: str | None
    code: str | None  # the rejected reply's code; None: no reply expected
    dead_lettered: bool


def _body(account: str, command_id: str, **fields: Any) -> dict[str, Any]:
    return {"command_id": command_id, "account_id": account, "workflow_name": "wf", **fields}


def _poisons(account: str) -> list[Poison]:
    def cid() -> str:
        return str(uuid.uuid4())

    deep, utf8, kind, quotes, large = cid(), cid(), cid(), cid(), cid()
    create = json.dumps(_body(account, deep, type="CreateInstance")).encode()[:-1]
    not_utf8 = json.dumps(_body(account, utf8, type="CreateInstance", instance_id="XX"))
    status = _body(account, quotes, type="ChangeStatus", instance_id="i", action='"' * 400_000)
    oversize = _body(account, large, type="CreateInstance", params="p" * 1_048_150)
    return [
        Poison(
            "params nested 10,000 deep",
            create + b', "params": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            deep,
            "command.too_deep",
            dead_lettered=True,
        ),
        Poison(
            "bytes FF FE in a string",
            not_utf8.encode().replace(b"XX", b"\xff\xfe"),
            utf8,
            "command.not_json",
            dead_lettered=True,
        ),
        Poison(
            "type of 700,000 characters",
            json.dumps(_body(account, kind, type="T" * 700_000)).encode(),
            kind,
            "command.unknown_type",
            dead_lettered=True,
        ),
        Poison(
            "action of 400,000 quotes",
            json.dumps(status).encode(),
            quotes,
            "command.invalid",
            dead_lettered=False,
        ),
        Poison(
            "params of 1,048,150 bytes",
            json.dumps(oversize).encode(),
            large,
            "command.too_large",
            dead_lettered=True,
        ),
        Poison("bracket soup", b"[" * 20_000, None, None, dead_lettered=True),
    ]


def _create(account: str, instance_id: str, params: Any = None) -> dict[str, Any]:
    return _body(
        account, str(uuid.uuid4()), type="CreateInstance", instance_id=instance_id, params=params
    )


async def _send_to(
    kafka: KafkaClient,
    partition: int,
    value: bytes,
    key: str,
    headers: list[tuple[str, bytes | None]] | None = None,
) -> int:
    sent = await kafka.producer.send_and_wait(
        kafka.settings.topics.commands,
        value,
        key=key.encode(),
        partition=partition,
        headers=headers,
    )
    return int(sent.offset)


def _source(dead: Received) -> tuple[int, int]:
    headers = dead.headers
    return int(headers["x-flowledger-source-partition"]), int(headers["x-flowledger-source-offset"])


async def test_each_poison_record_ends_and_the_partition_and_relay_carry_on(
    kafka: KafkaClient, new_id: str
) -> None:
    account = f"acc{new_id}"
    register = {"type": "RegisterWorkflow", **_body(account, str(uuid.uuid4()))}
    await kafka.send(register)
    assert (await kafka.reply(register["command_id"]))["outcome"] == "accepted"

    topics = kafka.settings.topics
    poisons: dict[tuple[int, int], Poison] = {}
    valid: list[dict[str, Any]] = []
    for partition in range(kafka.settings.partitions):
        for poison in _poisons(account):
            offset = await _send_to(kafka, partition, poison.value, f"{account}/wf/poison")
            poisons[(partition, offset)] = poison
        # Headers that are not text, or have no value, are no reason to refuse a command.
        after = _create(account, f"after-{partition}")
        odd_headers = [("binary", b"\xff\xfe"), ("empty", None)]
        value = json.dumps(after).encode()
        await _send_to(kafka, partition, value, command_key(after), odd_headers)
        valid.append(after)
    # Near the params limit: its event is about as large as an event can be, and still fits.
    largest = _create(account, "largest", params="q" * (MAX_JSON_BYTES - 100))
    last = _create(account, "last")
    for command in (largest, last):
        await kafka.send(command)
    valid += [largest, last]

    for command in valid:
        reply = await kafka.reply(command["command_id"])
        assert reply["outcome"] == "accepted", reply

    for poison in poisons.values():
        if poison.command_id is None:
            continue
        reply = await kafka.reply(poison.command_id)
        assert reply["outcome"] == "rejected", poison.name
        assert reply["error"]["code"] == poison.code, (poison.name, reply["error"])
        assert len(json.dumps(reply)) <= BOUNDED, poison.name

    expected = {source for source, poison in poisons.items() if poison.dead_lettered}
    dead = await kafka.wait_for(
        topics.dead_letters,
        lambda m: _source(m) in expected,
        count=len(expected),
    )
    assert {_source(m) for m in dead} == expected
    for message in dead:
        assert message.value == poisons[_source(message)].value  # the original bytes
        assert len(message.headers["x-flowledger-reason"].encode()) <= BOUNDED

    created = {command["instance_id"] for command in valid}
    events = await kafka.wait_for(
        topics.events,
        lambda m: m.json()["type"] == "InstanceCreated" and m.json()["instance_id"] in created,
        count=len(created),
    )
    assert {m.json()["instance_id"] for m in events} == created
