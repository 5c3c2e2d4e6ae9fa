"""`flowledger publish` over the real broker, against the running service on both stores: it
waits for each command's reply and prints it; a rejected command, or one that cannot be
answered, exits non-zero; `--no-wait` only publishes."""

from __future__ import annotations

import json
import uuid

import pytest

from services.bootstrap import Service
from tests.fixtures.cli import cli_env, run_cli


@pytest.fixture
def env(service: Service, kafka_bootstrap: str) -> dict[str, str]:
    return cli_env(kafka_bootstrap=kafka_bootstrap, topic_prefix=service.settings.topic_prefix)


def command(kind: str, account: str, **fields: object) -> dict[str, object]:
    return {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": "orders",
        **fields,
    }


def lines(*commands: dict[str, object]) -> str:
    return "".join(json.dumps(c) + "\n" for c in commands)


async def test_publish_prints_each_reply_in_turn_and_exits_zero_when_all_are_taken(
    env: dict[str, str], new_id: str
) -> None:
    account = f"acc-{new_id}"
    register = command("RegisterWorkflow", account)
    create = command("CreateInstance", account, instance_id=f"i-{new_id}", params={"n": 1})
    # Registration and creation have different keys: waiting for each reply orders them.
    ran = await run_cli("publish", env=env, stdin=lines(register, create))
    assert ran.code == 0, ran
    replies = [json.loads(line) for line in ran.out.splitlines()]
    assert [(r["command_id"], r["outcome"]) for r in replies] == [
        (register["command_id"], "accepted"),
        (create["command_id"], "accepted"),
    ]
    assert replies[1]["instance_id"] == f"i-{new_id}" and replies[1]["status"] == "queued"

    again = await run_cli("publish", env=env, stdin=lines(create))
    assert again.code == 0, again
    assert json.loads(again.out)["outcome"] == "duplicate"


async def test_a_rejected_or_unanswerable_command_exits_non_zero(
    env: dict[str, str], new_id: str
) -> None:
    account = f"acc-{new_id}"
    unknown = command("CreateInstance", account, instance_id=f"i-{new_id}")
    ran = await run_cli("publish", env=env, stdin=lines(unknown))
    assert ran.code == 1, ran
    reply = json.loads(ran.out)
    assert reply["outcome"] == "rejected" and reply["error"]["code"] == "workflow.not_found"

    register = command("RegisterWorkflow", account)
    mixed = lines(register) + "not json\n" + lines(command("StartRun", account, instance_id="x"))
    ran = await run_cli("publish", env=env, stdin=mixed)
    assert ran.code == 1, ran
    outcomes = [json.loads(line)["outcome"] for line in ran.out.splitlines()]
    assert outcomes == ["accepted", "rejected"]  # the line that is no command is not answered
    assert "line 2: no command_id" in ran.err and "dead-lettered" in ran.err


async def test_no_wait_only_publishes(env: dict[str, str], new_id: str) -> None:
    register = command("RegisterWorkflow", f"acc-{new_id}")
    ran = await run_cli("publish", "--no-wait", env=env, stdin=lines(register))
    assert ran.code == 0, ran
    assert ran.out.strip() == f"published key=acc-{new_id}/orders"


async def test_the_example_publishes_and_is_answered(env: dict[str, str]) -> None:
    example = await run_cli("publish", "--example", env=env)
    assert example.code == 0
    ran = await run_cli("publish", env=env, stdin=example.out)
    assert ran.code == 0, ran
    assert [json.loads(line)["outcome"] for line in ran.out.splitlines()] == [
        "accepted",
        "accepted",
    ]
