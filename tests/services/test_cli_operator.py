"""The operator's CLI against a live server (a separate process, as a user runs it), on both
stores: every command in `--json` and human form, and errors (unknown instance, bad token,
another account's instance, a rejected write, bad arguments) with a non-zero exit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.fixtures.cli import Ran, cli_env, finish_cli, run_cli, start_cli, wait_for_stderr
from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient


@dataclass
class Operator:
    server: LiveServer
    env: dict[str, str]
    workflow: str

    async def __call__(self, *argv: str, **env: str) -> Ran:
        return await run_cli(*argv, env={**self.env, **cli_env(**env)} if env else self.env)


@pytest.fixture
async def op(live_server: LiveServer, kafka_bootstrap: str) -> AsyncIterator[Operator]:
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        await register_workflow(http, live_server.account_a, workflow, live_server.token_a)
    env = cli_env(
        url=live_server.base_url,
        token=live_server.token_a,
        account=live_server.account_a,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=live_server.service.settings.topic_prefix,
    )
    yield Operator(live_server, env, workflow)


def ok(ran: Ran) -> Ran:
    assert ran.code == 0, (ran.code, ran.out, ran.err)
    return ran


async def test_instance_commands_in_json_and_human_form(op: Operator) -> None:
    wf, inst = op.workflow, f"order-{uuid.uuid4().hex[:6]}"

    created = ok(
        await op("instances", "create", wf, "--id", inst, "--params", '{"n": 7}', "--json")
    )
    [line] = created.lines()
    assert (line["id"], line["status"], line["workflow"]) == (inst, "queued", wf)
    human = ok(await op("instances", "create", wf))
    assert human.out.startswith("created instance cf_") and f"of {wf}: queued" in human.out
    minted = human.out.split()[2]

    workflows = ok(await op("workflows", "list", "--json")).lines()
    assert [w["name"] for w in workflows] == [wf]
    assert wf in ok(await op("workflows", "list")).out
    second = ok(await op("workflows", "register", "second", "--class-name", "S", "--json"))
    assert second.lines()[0]["name"] == "second" and second.lines()[0]["class_name"] == "S"
    again = ok(await op("workflows", "register", "second")).out
    assert again.startswith("registered workflow second (version ")
    both = ok(await op("workflows", "list")).out
    assert wf in both and "second" in both

    listed = ok(await op("instances", "list", "--json")).lines()
    assert [i["id"] for i in listed] == [minted, inst]  # newest first
    assert all(i["workflow"] == wf and i["status"] == "queued" for i in listed)
    table = ok(await op("instances", "list", "--workflow", wf, "--status", "queued")).out
    assert inst in table and minted in table and "queued" in table
    assert ok(await op("instances", "list", "--status", "paused", "--json")).out == ""

    got = ok(await op("instances", "get", inst, "--json")).lines()  # its workflow looked up
    assert got[0]["status"] == "queued" and got[0]["params"] == {"n": 7}
    shown = ok(await op("instances", "get", f"{wf}/{inst}")).out
    assert inst in shown and "queued" in shown and '{"n":7}' in shown

    paused = ok(await op("instances", "pause", inst))
    assert paused.out.strip() == f"pause: instance {inst} of {wf} is paused"
    resumed = ok(await op("instances", "resume", inst, "-w", wf, "--json")).lines()
    assert resumed[0]["status"] == "queued" and resumed[0]["action"] == "resume"
    sent = ok(await op("instances", "send-event", inst, "approved", "--payload", '{"by": 1}'))
    assert sent.out.strip() == f"sent 'approved' to instance {inst} of {wf}"
    sent_json = ok(await op("instances", "send-event", inst, "again", "--json")).lines()
    assert sent_json[0]["instanceId"] == inst and sent_json[0]["type"] == "again"
    assert "is terminated" in ok(await op("instances", "terminate", inst)).out
    restarted = ok(await op("instances", "restart", inst, "--json")).lines()
    assert restarted[0]["status"] == "queued"

    history = ok(await op("instances", "history", inst, "--json")).lines()
    assert [e["type"] for e in history] == [
        "InstanceCreated", "InstancePaused", "InstanceResumed", "EventReceived",
        "EventReceived", "InstanceTerminated", "InstanceRestarted",
    ]  # fmt: skip
    assert [e["version"] for e in history] == list(range(1, 8))
    assert history[3]["data"]["payload"] == {"by": 1}
    timeline = ok(await op("instances", "history", inst)).out
    assert "InstanceCreated" in timeline and "InstanceRestarted" in timeline

    then = ok(await op("instances", "get", inst, "--as-of", "2", "--json")).lines()[0]
    assert then["status"] == "paused"
    at = history[5]["occurred_at"]
    terminated = ok(await op("instances", "get", inst, "--as-of", at, "--json")).lines()[0]
    assert terminated["status"] == "terminated"
    past = ok(await op("instances", "get", inst, "--as-of", "1")).out
    assert f"instance {inst} as of 1" in past and "queued" in past


async def test_errors_print_the_apis_message_and_exit_non_zero(op: Operator) -> None:
    wf, inst = op.workflow, f"order-{uuid.uuid4().hex[:6]}"
    ok(await op("instances", "create", wf, "--id", inst))
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"

    for argv in (
        ("instances", "get", ghost),
        ("instances", "get", ghost, "--json"),
        ("instances", "history", f"{wf}/{ghost}"),
        ("instances", "pause", ghost, "--json"),
        ("instances", "get", inst, "--as-of", "1999-01-01T00:00:00Z"),
    ):
        ran = await op(*argv)
        assert ran.code == 1 and ran.out == "", (argv, ran)
        assert ran.err.startswith("error: "), (argv, ran.err)
        assert "not found" in ran.err or "did not exist" in ran.err, (argv, ran.err)
        assert "Traceback" not in ran.err

    for form in ((), ("--json",)):
        bad_token = await op("instances", "get", inst, "-w", wf, *form, token="not-a-token")
        assert bad_token.code == 1 and bad_token.out == ""
        assert bad_token.err.startswith("error: ") and "token" in bad_token.err
        # Account B's token on account A's instance: as if it did not exist.
        theirs = await op("instances", "get", inst, "-w", wf, *form, token=op.server.token_b)
        assert theirs.code == 1 and "not found" in theirs.err

    again = await op("instances", "create", wf, "--id", inst)
    assert again.code == 1 and "instance.already_exists" in again.err
    unknown = await op("instances", "create", "never-registered", "--json")
    assert unknown.code == 1 and "workflow.not_found" in unknown.err
    bad_json = await op("instances", "create", wf, "--params", "{nope")
    assert bad_json.code == 2 and "--params is not JSON" in bad_json.err
    bad_time = await op("instances", "get", inst, "-w", wf, "--as-of", "yesterday")
    assert bad_time.code == 1 and "as_of" in bad_time.err
    no_token = await op("workflows", "list", token="")
    assert no_token.code == 2 and "FLOWLEDGER_TOKEN" in no_token.err
    away = await op("workflows", "list", url="http://127.0.0.1:9")
    assert away.code == 1 and "cannot reach" in away.err
    usage = await op("instances", "frobnicate", inst)
    assert usage.code == 2


async def test_events_tail_prints_an_instances_events_once_each(op: Operator) -> None:
    wf, inst = op.workflow, f"order-{uuid.uuid4().hex[:6]}"
    # From now: listening (it says so once positioned) before the instance exists.
    tail = await start_cli("events", "tail", "--instance", inst, "--count", "3", "--json",
                           env=op.env)  # fmt: skip
    await wait_for_stderr(tail, "listening")
    ok(await op("instances", "create", wf, "--id", inst))
    ok(await op("instances", "pause", inst))
    ok(await op("instances", "resume", inst))
    lines = ok(await finish_cli(tail)).lines()
    assert [e["type"] for e in lines] == ["InstanceCreated", "InstancePaused", "InstanceResumed"]
    assert [e["version"] for e in lines] == [1, 2, 3]
    assert lines[0]["account_id"] == op.server.account_a and lines[0]["workflow_name"] == wf

    ok(await op("instances", "terminate", inst))
    whole = ok(await op("events", "tail", "--instance", inst, "--from-beginning", "--count", "4",
                        "--json"))  # fmt: skip
    assert [e["version"] for e in whole.lines()] == [1, 2, 3, 4]
    assert {e["instance_id"] for e in whole.lines()} == {inst}
    human = ok(await op("events", "tail", "--instance", inst, "--from-beginning", "--count", "2",
                        "--type", "InstancePaused", "--type", "InstanceResumed"))  # fmt: skip
    rows = human.out.splitlines()
    assert len(rows) == 2 and "InstancePaused" in rows[0] and "InstanceResumed" in rows[1]
    assert f"{op.server.account_a}/{wf}/{inst}" in rows[0]
    assert "listening" in human.err


def test_the_parser_names_every_command() -> None:
    from services.cli import main

    for argv in (["workflows", "--help"], ["instances", "--help"], ["events", "tail", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0


async def test_instances_delete_deletes_a_finished_instance_and_refuses_a_running_one(
    op: Operator, live_kafka: KafkaClient
) -> None:
    wf, done, live = op.workflow, f"done-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    for inst in (done, live):
        ok(await op("instances", "create", wf, "--id", inst))
    account = op.server.account_a
    for inst, kinds in ((done, ("StartRun", "CompleteRun")), (live, ("StartRun",))):
        for kind in kinds:
            command = {"type": kind, "command_id": str(uuid.uuid4()), "account_id": account,
                       "workflow_name": wf, "instance_id": inst}  # fmt: skip
            await live_kafka.send(command)
            assert (await live_kafka.reply(command["command_id"]))["outcome"] == "accepted"
    for _ in range(150):  # progress sent straight to Kafka reaches the view asynchronously
        shown = ok(await op("instances", "get", f"{wf}/{done}", "--json")).lines()[0]
        if shown["status"] == "complete":
            break
        await asyncio.sleep(0.1)

    refused = await op("instances", "delete", live, "-w", wf)
    assert refused.code == 1 and "terminate it first" in refused.err
    [line] = ok(await op("instances", "delete", done, "--json")).lines()
    assert line == {"id": done, "workflow": wf, "deleted": True}
    gone = await op("instances", "delete", f"{wf}/{done}")
    assert gone.code == 1 and "instance.not_found" in gone.err
    assert done not in ok(await op("instances", "list", "-w", wf)).out
