"""The operator's commands: `flowledger workflows ...`, `instances ...` over the HTTP API, and
`events tail` over Kafka.

`workflows register` is there so that no step of a first session needs JSON. Every HTTP
command takes `--url`, `--token`, `--account` (or FLOWLEDGER_URL, FLOWLEDGER_TOKEN,
FLOWLEDGER_ACCOUNT) and `--json`. Human output is tables and timelines (rich); `--json` prints
one JSON object per line (a list: one per item). An error prints the API's message on stderr
and exits 1 (2: a usage error; 3: a write published but not answered in time).

An instance is named by its id and its workflow: `--workflow W`, or `W/ID`, or the id alone,
which is then looked up in every workflow of the account.

Built on the public client, `flowledger.client`: nothing here touches the service's insides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported when a command runs: building the parser stays cheap
    from flowledger.client import FlowledgerClient, HttpClient

OPERATOR_COMMANDS = ("workflows", "instances", "events")
STATUSES = (
    "queued", "running", "paused", "errored", "terminated", "complete", "waitingForPause",
    "waiting", "rollingBack",
)  # fmt: skip
# Exit codes beside 0: an API or connection error, a usage error, a write still pending.
FAILED, USAGE, PENDING = 1, 2, 3


class UsageError(Exception):
    """Bad arguments: the message is printed and the command exits 2."""


Handler = Callable[["HttpClient", argparse.Namespace, "Output"], Awaitable[None]]


# --- the parsers ---------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Adds `workflows`, `instances` and `events` to the `flowledger` parser's subcommands."""
    http = argparse.ArgumentParser(add_help=False)
    http.add_argument(
        "--url", default=os.environ.get("FLOWLEDGER_URL"), help="API base URL (FLOWLEDGER_URL)"
    )
    http.add_argument(
        "--token", default=os.environ.get("FLOWLEDGER_TOKEN"), help="API token (FLOWLEDGER_TOKEN)"
    )
    http.add_argument(
        "--account",
        default=os.environ.get("FLOWLEDGER_ACCOUNT"),
        help="account id (FLOWLEDGER_ACCOUNT)",
    )
    http.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_workflows(sub, http)
    _add_instances(sub, http)
    _add_events(sub)


def _add_workflows(sub: Any, http: argparse.ArgumentParser) -> None:
    workflows = sub.add_parser("workflows", help="the account's workflows (HTTP API)")
    wf_actions = workflows.add_subparsers(dest="action", required=True)
    wf_actions.add_parser("list", parents=[http], help="list workflows")
    register = wf_actions.add_parser(
        "register", parents=[http], help="register a workflow, or deploy a new version of it"
    )
    register.add_argument("name", metavar="NAME")
    register.add_argument("--class-name", help="the class that implements it")
    register.add_argument("--script-name", help="the script that holds it")
    register.add_argument(
        "--schedule", action="append", dest="schedules", help="a cron expression (repeatable)"
    )


def _add_instances(sub: Any, http: argparse.ArgumentParser) -> None:
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("id", metavar="ID", help="the instance id (or WORKFLOW/ID)")
    named.add_argument("-w", "--workflow", help="its workflow (default: looked up)")
    instances = sub.add_parser("instances", help="inspect and drive instances (HTTP API)")
    actions = instances.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[http], help="list instances, newest first")
    listing.add_argument("-w", "--workflow", help="only this workflow's (default: all)")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    get = actions.add_parser("get", parents=[http, named], help="an instance and its steps")
    get.add_argument(
        "--as-of", help="as it was at this RFC 3339 time, or this version number (1: created)"
    )
    actions.add_parser("history", parents=[http, named], help="its lifecycle events, in order")
    create = actions.add_parser("create", parents=[http], help="create an instance")
    create.add_argument("workflow", metavar="WORKFLOW")
    create.add_argument("--params", help="its params, as JSON")
    create.add_argument("--id", dest="instance_id", help="its id (default: minted)")
    for action in ("pause", "resume"):
        actions.add_parser(action, parents=[http, named], help=f"{action} an instance")
    terminate = actions.add_parser("terminate", parents=[http, named], help="terminate it")
    terminate.add_argument("--rollback", action="store_true", help="run its compensations")
    restart = actions.add_parser("restart", parents=[http, named], help="start it again")
    restart.add_argument("--from", dest="from_step", help="from this step (keeps those before)")
    actions.add_parser(
        "delete", parents=[http, named], help="delete a finished instance (its id stays taken)"
    )
    send = actions.add_parser("send-event", parents=[http, named], help="send it an event")
    send.add_argument("type", metavar="TYPE", help="the event type")
    send.add_argument("--payload", help="the event's payload, as JSON")


def _add_events(sub: Any) -> None:
    events = sub.add_parser("events", help="lifecycle events (Kafka)")
    ev_actions = events.add_subparsers(dest="action", required=True)
    tail = ev_actions.add_parser("tail", help="print lifecycle events as they are published")
    tail.add_argument(
        "--account", default=os.environ.get("FLOWLEDGER_ACCOUNT"), help="(FLOWLEDGER_ACCOUNT)"
    )
    tail.add_argument("-w", "--workflow")
    tail.add_argument("--instance")
    tail.add_argument("--type", action="append", dest="types", help="an event type (repeatable)")
    tail.add_argument("--from-beginning", action="store_true", help="from the oldest event kept")
    tail.add_argument("--count", type=int, help="stop after this many events")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")


# --- running -------------------------------------------------------------------------------


def run(
    args: argparse.Namespace,
    default_url: str,
    events_source: Callable[[], FlowledgerClient | None],
) -> int:
    """Runs an operator command. `default_url`: the API's URL when neither --url nor
    FLOWLEDGER_URL names one. `events_source()`: a client (not started) for `events tail`,
    or None when no broker is known (it has said why on stderr)."""
    import httpx
    from aiokafka.errors import KafkaError

    from flowledger.client import ApiError, Pending, TopicMissing

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    out = Output(as_json=args.json)
    try:
        if args.command == "events":
            return asyncio.run(_tail(args, out, events_source))
        args.url = args.url or default_url
        return asyncio.run(_http_command(args, out))
    except UsageError as error:
        out.error(str(error))
        return USAGE
    except ApiError as error:
        out.error(error.message)
        return FAILED
    except Pending as pending:
        out.error(f"{pending}: see the replies topic for command {pending.command_id}")
        return PENDING
    except (TopicMissing, KafkaError) as error:
        out.error(f"Kafka: {error}")
        return FAILED
    except (OSError, httpx.TransportError) as error:
        out.error(f"cannot reach the API at {getattr(args, 'url', '')}: {error}")
        return FAILED


async def _http_command(args: argparse.Namespace, out: Output) -> int:
    if not args.token:
        raise UsageError("no token: pass --token or set FLOWLEDGER_TOKEN")
    if not args.account:
        raise UsageError("no account: pass --account or set FLOWLEDGER_ACCOUNT")
    from flowledger.client import HttpClient

    async with HttpClient(args.url, args.token, account_id=args.account) as http:
        handler = _HANDLERS[(args.command, args.action)]
        await handler(http, args, out)
    return 0


async def _workflows_list(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    found = await http.list_workflows()
    out.table(
        found,
        [("name", "name"), ("id", "id"), ("version", "version_id"), ("created", "created_on"),
         ("modified", "modified_on")],
        title=f"workflows of {args.account}",
    )  # fmt: skip


async def _workflows_register(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    registered = await http.register_workflow(
        args.name,
        class_name=args.class_name,
        script_name=args.script_name,
        schedules=args.schedules,
    )
    if out.as_json:
        out.line(registered)
    else:
        out.say(f"registered workflow {registered['name']} (version {registered['version_id']})")


async def _instances_list(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    names = [args.workflow] if args.workflow else [w["name"] for w in await http.list_workflows()]
    found: list[dict[str, Any]] = []
    for name in names:
        items = await http.list_instances(name, status=args.status, limit=args.limit)
        found += [{"workflow": name, **item} for item in items]
    found.sort(key=lambda i: i["created_on"], reverse=True)
    out.table(
        found[: args.limit],
        [("id", "id"), ("workflow", "workflow"), ("status", "status"),
         ("created", "created_on"), ("started", "started_on"), ("ended", "ended_on")],
        title=f"instances of {args.account}",
    )  # fmt: skip


async def _workflow_of(http: HttpClient, args: argparse.Namespace) -> tuple[str, str]:
    """(workflow, instance id) named by the arguments, looking the workflow up if need be."""
    instance_id: str = args.id
    if args.workflow:
        return args.workflow, instance_id
    if "/" in instance_id:
        named, _, instance_id = instance_id.partition("/")
        return named, instance_id
    from flowledger.client import ApiError

    holders = []
    for workflow in await http.list_workflows():
        try:
            await http.get_instance(workflow["name"], instance_id, simple=True)
        except ApiError as error:
            if error.status != 404:
                raise
            continue
        holders.append(workflow["name"])
    if not holders:
        raise ApiError(404, f"instance {instance_id!r} not found in any workflow")
    if len(holders) > 1:
        raise UsageError(
            f"instance {instance_id!r} exists in workflows {', '.join(holders)}: pass --workflow"
        )
    return holders[0], instance_id


async def _instances_get(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    workflow, instance_id = await _workflow_of(http, args)
    doc = await http.get_instance(workflow, instance_id, as_of=args.as_of)
    if out.as_json:
        out.line({"id": instance_id, "workflow": workflow, **doc})
        return
    when = f" as of {args.as_of}" if args.as_of else ""
    fields = {
        "id": instance_id, "workflow": workflow, "status": doc["status"],
        "version_id": doc.get("versionId"), "trigger": (doc.get("trigger") or {}).get("source"),
        "queued": doc.get("queued"), "started": doc.get("start"), "ended": doc.get("end"),
        "params": doc.get("params"), "output": doc.get("output"), "error": doc.get("error"),
    }  # fmt: skip
    out.fields(fields, title=f"instance {instance_id}{when}")
    steps = [
        {**step, "n": n, "outcome": _step_outcome(step)}
        for n, step in enumerate(doc.get("steps") or [], 1)
    ]
    if steps:
        out.table(
            steps,
            [("#", "n"), ("type", "type"), ("name", "name"), ("outcome", "outcome"),
             ("start", "start"), ("end", "end"), ("output", "output")],
            title=f"{len(steps)} steps",
        )  # fmt: skip


def _step_outcome(step: dict[str, Any]) -> str:
    if step.get("type") == "termination":
        return "terminated"
    if step.get("type") == "step":
        success = step.get("success")
        return "running" if success is None else "complete" if success else "errored"
    if not step.get("finished"):
        return "waiting"
    return "errored" if step.get("error") else "complete"


async def _instances_history(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    workflow, instance_id = await _workflow_of(http, args)
    events = await http.history(workflow, instance_id)
    if not out.as_json:  # the ids every creation repeats: in --json only
        events = [{**e, "data": _without(e["data"], _IDS)} for e in events]
    out.table(
        events,
        [("v", "version"), ("occurred", "occurred_at"), ("type", "type"), ("data", "data"),
         ("command", "command_id")],
        title=f"history of {workflow}/{instance_id}",
    )  # fmt: skip


async def _instances_create(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    params = _json_option("--params", args.params)
    created = await http.create_instance(args.workflow, args.instance_id, params=params)
    if out.as_json:
        out.line({"workflow": args.workflow, **created})
    else:
        out.say(f"created instance {created['id']} of {args.workflow}: {created['status']}")


Action = Literal["pause", "resume", "terminate", "restart"]


def _status_change(action: Action) -> Handler:
    async def change(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
        workflow, instance_id = await _workflow_of(http, args)
        fields: dict[str, Any] = {}
        if getattr(args, "rollback", False):
            fields["rollback"] = True
        if getattr(args, "from_step", None):
            fields["from"] = {"name": args.from_step}
        changed = await http.change_status(workflow, instance_id, action, **fields)
        if out.as_json:
            out.line({"id": instance_id, "workflow": workflow, "action": action, **changed})
        else:
            out.say(f"{action}: instance {instance_id} of {workflow} is {changed['status']}")

    return change


async def _instances_delete(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    workflow, instance_id = await _workflow_of(http, args)
    await http.delete_instance(workflow, instance_id)
    if out.as_json:
        out.line({"id": instance_id, "workflow": workflow, "deleted": True})
    else:
        out.say(f"deleted instance {instance_id} of {workflow}")


async def _instances_send_event(http: HttpClient, args: argparse.Namespace, out: Output) -> None:
    workflow, instance_id = await _workflow_of(http, args)
    payload = _json_option("--payload", args.payload)
    sent = await http.send_event(workflow, instance_id, args.type, payload)
    if out.as_json:
        out.line({"workflow": workflow, "type": args.type, **sent})
    else:
        out.say(f"sent {args.type!r} to instance {instance_id} of {workflow}")


_IDS = ("global_id", "workflow_id", "version_id")


def _without(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names}


def _json_option(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{name} is not JSON: {error}") from None


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("workflows", "list"): _workflows_list,
    ("workflows", "register"): _workflows_register,
    ("instances", "list"): _instances_list,
    ("instances", "get"): _instances_get,
    ("instances", "history"): _instances_history,
    ("instances", "create"): _instances_create,
    ("instances", "pause"): _status_change("pause"),
    ("instances", "resume"): _status_change("resume"),
    ("instances", "terminate"): _status_change("terminate"),
    ("instances", "restart"): _status_change("restart"),
    ("instances", "delete"): _instances_delete,
    ("instances", "send-event"): _instances_send_event,
}  # fmt: skip


async def _tail(
    args: argparse.Namespace, out: Output, events_source: Callable[[], FlowledgerClient | None]
) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be 1 or more")
    client = events_source()
    if client is None:
        return FAILED
    shown = 0
    async with (
        client,
        client.events(
            account_id=args.account,
            workflow_name=args.workflow,
            instance_id=args.instance,
            types=args.types,
            from_beginning=args.from_beginning,
        ) as stream,
    ):
        out.ready()
        async for event in stream:
            out.event(event)
            shown += 1
            if args.count is not None and shown >= args.count:
                break
    return 0


# --- output --------------------------------------------------------------------------------


class Output:
    """Human output (rich tables on stdout) or JSON lines; errors on stderr either way."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            # Piped, rich would assume 80 columns and fold ids: wide lines grep better.
            self._console = Console(
                width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=False
            )
        return self._console

    def line(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def error(self, message: str) -> None:
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr)

    def ready(self) -> None:
        """Tells a human that the tail is listening (stderr: JSON lines stay clean)."""
        print("listening for lifecycle events (Ctrl-C to stop)", file=sys.stderr, flush=True)

    def table(
        self, rows: list[dict[str, Any]], columns: list[tuple[str, str]], *, title: str
    ) -> None:
        if self.as_json:
            for row in rows:
                self.line(row)
            return
        from rich.table import Table

        table = Table(title=f"{title} ({len(rows)})", title_justify="left")
        for header, _ in columns:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(key)) for _, key in columns))
        self.console.print(table)

    def fields(self, values: dict[str, Any], *, title: str) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for name, value in values.items():
            table.add_row(name, _cell(value))
        self.console.print(table)

    def event(self, event: Any) -> None:
        import msgspec

        if self.as_json:
            sys.stdout.write(msgspec.json.encode(event).decode() + "\n")
            sys.stdout.flush()
            return
        data = {
            k: v
            for k, v in msgspec.to_builtins(event).items()
            if k not in ("type", "event_id", "account_id", "workflow_name", "instance_id",
                         "version", "occurred_at", "command_id", *_IDS)
        }  # fmt: skip
        where = "/".join(
            str(x)
            for x in (event.account_id, event.workflow_name, getattr(event, "instance_id", ""))
            if x
        )
        self.console.print(
            f"{_utc(event.occurred_at)}  v{event.version:<3} {type(event).__name__:<20} "
            f"{where}  {_cell(data, limit=120)}",
            markup=False,
        )
        self.console.file.flush()


def _utc(value: Any) -> str:
    """As every read model writes times: UTC, microseconds, `Z`."""
    from datetime import UTC

    return str(value.astimezone(UTC).isoformat(timespec="microseconds")).replace("+00:00", "Z")


def _cell(value: Any, limit: int = 80) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"
