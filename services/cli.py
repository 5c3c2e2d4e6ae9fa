"""The `flowledger` command: serve, kafka, publish, projections rebuild, schemas, worker; and
the operator's workflows, instances and events commands (services/cli_operator.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services import cli_operator
from services.application.kek_checks import KeyEncryptionKeyMismatch
from services.observability.logs import configure_logging
from services.settings import Settings

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowledger")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_service_parsers(sub)
    _add_client_parsers(sub)
    cli_operator.add_parsers(sub)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_format)
    command = _operate if args.command in cli_operator.OPERATOR_COMMANDS else COMMANDS[args.command]
    try:
        return command(settings, args)
    except KeyboardInterrupt:
        return 130
    except KeyEncryptionKeyMismatch as refused:  # from any process that opens the store
        print(f"flowledger {args.command}: {refused}", file=sys.stderr)
        return 2


def _add_service_parsers(sub: Subparsers) -> None:
    """The verbs that run or maintain the service itself."""
    serve = sub.add_parser(
        "serve", help="run the service (all roles by default, one supervised process each)"
    )
    serve.add_argument(
        "--role",
        choices=["all", "commands", "relay", "projections", "api", "scheduler"],
        default="all",
    )
    serve.add_argument(
        "--single-process",
        action="store_true",
        help="run every role in this one process (FLOWLEDGER_SINGLE_PROCESS=1)",
    )
    # Set by the supervisor on its children (services/supervisor.py); not for people.
    serve.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    kafka = sub.add_parser("kafka", help="the local Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    projections = sub.add_parser("projections", help="read-model maintenance")
    projections.add_argument("action", choices=["rebuild"])
    projections.add_argument("name", nargs="?", help="one read model; all when omitted")
    keys = sub.add_parser("keys", help="the instances' data keys (docs/erasure.md)")
    keys.add_argument(
        "action",
        choices=["rewrap", "check"],
        help="rewrap: wrap every data key with the newest KEK (rotation); "
        "check: do the configured KEKs open the store's keys (the check every role makes)",
    )
    schemas = sub.add_parser("schemas", help="regenerate schemas/ from the contracts")
    schemas.add_argument("--out", default="schemas")


def _add_client_parsers(sub: Subparsers) -> None:
    """The verbs of a producer and of a worker host: the broker is all they need."""
    publish = sub.add_parser("publish", help="publish JSON commands (one per line on stdin)")
    publish.add_argument("--example", action="store_true", help="print example commands instead")
    publish.add_argument(
        "--no-wait", action="store_true", help="publish without waiting for the replies"
    )
    publish.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each reply (30)"
    )
    worker = sub.add_parser("worker", help="run a workflow's Python code (README 'Workers')")
    worker.add_argument("target", metavar="MODULE:CLASS", help="a WorkflowEntrypoint subclass")
    worker.add_argument("--workflow", required=True, help="the workflow name it runs")
    worker.add_argument(
        "--account",
        action="append",
        default=[],
        help="register the workflow in this account and run its instances there (repeatable; "
        "none: run the workflow's instances in every account, registering nothing)",
    )
    worker.add_argument("--concurrency", type=int, default=16, help="instances run at once")
    worker.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.role == "all" and not (args.single_process or settings.single_process):
        # Every role, each in its own child process: every core, and a crash is restarted.
        from services.supervisor import serve_supervised

        return serve_supervised(settings)

    from services.bootstrap import ROLES
    from services.server import serve

    roles = ROLES if args.role == "all" else (args.role,)
    asyncio.run(serve(settings, roles, supervised=args.supervised))
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from flowledger.worker import EntrypointError, load_entrypoint
    from services.worker.process import run_worker

    try:
        load_entrypoint(args.target)  # before anything connects: a typo fails at once
    except EntrypointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("error: --concurrency must be 1 or more", file=sys.stderr)
        return 2
    bootstrap = _bootstrap(settings)
    if bootstrap is None:
        return 1
    asyncio.run(
        run_worker(
            settings,
            bootstrap,
            args.target,
            args.workflow,
            args.account,
            args.concurrency,
            args.metrics_port,
        )
    )
    return 0


def _bootstrap(settings: Settings) -> str | None:
    """FLOWLEDGER_KAFKA_BOOTSTRAP, else the local broker `make run` started."""
    from services.dev_provisioning.kafka import broker_status

    bootstrap = settings.kafka_bootstrap or getattr(
        broker_status(settings.state_dir / "kafka"), "bootstrap", None
    )
    if bootstrap is None:
        print(
            "error: no broker: set FLOWLEDGER_KAFKA_BOOTSTRAP or run `make run` first",
            file=sys.stderr,
        )
    return bootstrap


def _rewrap(settings: Settings) -> int:
    """After a new KEK was put first in FLOWLEDGER_KEY_ENCRYPTION_KEYS: once this ran, the
    older KEKs may be dropped from the list."""
    from services.application.sealing import UnknownKeyEncryptionKey
    from services.bootstrap import build_application
    from services.store.schema_lock import schema_lock

    with schema_lock(settings.store):
        app = build_application(settings)
    try:
        print(f"rewrapped {app.keyring.rewrap_all()} data keys with the newest key")
    except UnknownKeyEncryptionKey as unknown:  # the store still knows the older KEKs
        print(f"error: {unknown}; nothing was retired", file=sys.stderr)
        return 1
    finally:
        app.close()
    return 0


def _check_keys(settings: Settings) -> int:
    """What every role checks at its start, asked for on its own (e.g. before a deploy)."""
    from services.application.kek_checks import kek_id
    from services.bootstrap import build_application
    from services.store.schema_lock import schema_lock

    with schema_lock(settings.store):
        app = build_application(settings)  # refuses a mismatch (KeyEncryptionKeyMismatch)
    try:
        known = ", ".join(sorted(app.keyring.store.checks()))
    finally:
        app.close()
    configured = ", ".join(kek_id(k) for k in settings.keks())
    print(f"ok: the store knows KEK ids {known}; configured, newest first: {configured}")
    return 0


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    name: str | None = args.name
    """Safe beside a running service: readers keep the old view until the swap."""
    from services.application.notification_log import NotificationLog
    from services.bootstrap import READ_MODELS, build_application
    from services.roles.projections import rebuild
    from services.store.document_view import open_view
    from services.store.schema_lock import schema_lock

    if name is not None and name not in READ_MODELS:
        print(
            f"error: no read model {name!r}; choose from {', '.join(READ_MODELS)}", file=sys.stderr
        )
        return 2
    with schema_lock(settings.store):
        app = build_application(settings)
    try:
        for view_name in [name] if name else list(READ_MODELS):
            with schema_lock(settings.store):
                live = open_view(app.factory, view_name)
                shadow = open_view(app.factory, f"{view_name}__rebuild")
            applied = rebuild(NotificationLog(app), live, shadow, READ_MODELS[view_name])
            print(f"rebuilt {view_name} from {applied} notifications")
    finally:
        app.close()
    return 0


def _kafka(settings: Settings, args: argparse.Namespace) -> int:
    action = args.action
    from services.dev_provisioning import kafka as kafka_local

    state_dir = settings.state_dir / "kafka"
    try:
        if action == "start":
            broker = kafka_local.start_broker(state_dir)
            print(f"Kafka broker running, pid {broker.pid}, state in {state_dir}")
            print(broker.bootstrap)
        elif action == "stop":
            print("stopped" if kafka_local.stop_broker(state_dir) else "no broker was running")
        else:
            status = kafka_local.broker_status(state_dir)
            print(f"running at {status.bootstrap} (pid {status.pid})" if status else "not running")
            return 0 if status else 1
    except kafka_local.KafkaProvisioningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _example(settings: Settings, args: argparse.Namespace) -> int:
    account, workflow = "dev", "demo"
    print(
        json.dumps(
            {
                "type": "RegisterWorkflow",
                "command_id": str(uuid.uuid4()),
                "account_id": account,
                "workflow_name": workflow,
            }
        )
    )
    print(
        json.dumps(
            {
                "type": "CreateInstance",
                "command_id": str(uuid.uuid4()),
                "account_id": account,
                "workflow_name": workflow,
                "instance_id": f"demo-{uuid.uuid4().hex[:8]}",
                "params": {"hello": "world"},
            }
        )
    )
    return 0


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    if args.example:
        return _example(settings, args)
    from services.publishing import publish_and_wait, publish_lines

    bootstrap = _bootstrap(settings)
    if bootstrap is None:
        return 1
    text = sys.stdin.read()
    if args.no_wait:
        sent = asyncio.run(publish_lines(bootstrap, settings.topics.commands, text))
        for key in sent:
            print(f"published key={key}")
        return 0
    from aiokafka.errors import KafkaError

    from flowledger.client import TopicMissing

    try:
        all_taken = asyncio.run(
            publish_and_wait(
                bootstrap,
                settings.topic_prefix,
                text,
                args.timeout,
                emit=lambda line: print(line, flush=True),
                complain=lambda problem: print(f"error: {problem}", file=sys.stderr, flush=True),
            )
        )
    except (TopicMissing, KafkaError) as error:
        print(f"error: Kafka: {error}", file=sys.stderr)
        return 1
    return 0 if all_taken else 1


def _operate(settings: Settings, args: argparse.Namespace) -> int:
    from flowledger.client import FlowledgerClient

    def events_source() -> FlowledgerClient | None:
        bootstrap = _bootstrap(settings)
        if bootstrap is None:
            return None
        return FlowledgerClient(bootstrap, topic_prefix=settings.topic_prefix)

    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    return cli_operator.run(args, f"http://{host}:{settings.http_port}", events_source)



def _keys(settings: Settings, args: argparse.Namespace) -> int:
    return _rewrap(settings) if args.action == "rewrap" else _check_keys(settings)


def _schemas(settings: Settings, args: argparse.Namespace) -> int:
    from services.schema_export import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


Command = Callable[[Settings, argparse.Namespace], int]
COMMANDS: dict[str, Command] = {
    "serve": _serve,
    "kafka": _kafka,
    "projections": _rebuild,
    "keys": _keys,
    "schemas": _schemas,
    "publish": _publish,
    "worker": _worker,
}


if __name__ == "__main__":
    raise SystemExit(main())
