"""The `flowledger` command: serve, kafka, publish, projections rebuild, schemas."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from pathlib import Path

from services.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowledger")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (all roles by default)")
    serve.add_argument(
        "--role",
        choices=["all", "commands", "relay", "projections", "api", "scheduler"],
        default="all",
    )

    kafka = sub.add_parser("kafka", help="the local Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])

    publish = sub.add_parser("publish", help="publish JSON commands (one per line on stdin)")
    publish.add_argument("--example", action="store_true", help="print example commands instead")

    projections = sub.add_parser("projections", help="read-model maintenance")
    projections.add_argument("action", choices=["rebuild"])
    projections.add_argument("name", nargs="?", help="one read model; all when omitted")

    schemas = sub.add_parser("schemas", help="regenerate schemas/ from the contracts")
    schemas.add_argument("--out", default="schemas")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "faststream", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings()
    try:
        if args.command == "serve":
            return _serve(settings, args.role)
        if args.command == "kafka":
            return _kafka(settings, args.action)
        if args.command == "projections":
            return _rebuild(settings, args.name)
        if args.command == "publish":
            return _example() if args.example else _publish(settings)
        if args.command == "schemas":
            from services.schema_export import write_schemas

            for path in write_schemas(Path(args.out)):
                print(path)
            return 0
    except KeyboardInterrupt:
        return 130
    return 2


def _serve(settings: Settings, role: str) -> int:
    from services.bootstrap import ROLES
    from services.server import serve

    roles = ROLES if role == "all" else (role,)
    asyncio.run(serve(settings, roles))
    return 0


def _rebuild(settings: Settings, name: str | None) -> int:
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


def _kafka(settings: Settings, action: str) -> int:
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


def _example() -> int:
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


def _publish(settings: Settings) -> int:
    from services.dev_provisioning.kafka import broker_status
    from services.publishing import publish_lines

    bootstrap = settings.kafka_bootstrap or getattr(
        broker_status(settings.state_dir / "kafka"), "bootstrap", None
    )
    if bootstrap is None:
        print(
            "error: no broker: set FLOWLEDGER_KAFKA_BOOTSTRAP or run `make run` first",
            file=sys.stderr,
        )
        return 1
    sent = asyncio.run(publish_lines(bootstrap, settings.topics.commands, sys.stdin.read()))
    for key in sent:
        print(f"published key={key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
