"""`flowledger worker`: one process running one workflow's code until SIGINT/SIGTERM.

Start-up: the topics are declared (as every role does, so the worker may start before the
service), the store is opened for reading histories, the workflow is registered in each
`--account` given, then the events consumer joins the workflow's group.
"""

from __future__ import annotations

import asyncio
import logging

from flowledger.worker import load_entrypoint
from services.infra.kafka_topics import ensure_topics
from services.infra.shutdown import stop_on_signals
from services.settings import Settings
from services.worker.channel import CommandChannel
from services.worker.history import StoreHistory
from services.worker.metrics import WorkerMetrics
from services.worker.runtime import WorkerRuntime

log = logging.getLogger("flowledger.worker")


def group_id(settings: Settings, workflow: str) -> str:
    """One consumer group per workflow: its workers share its instances."""
    return f"{settings.topic_prefix}.worker.{workflow}"


async def start_worker(
    settings: Settings,
    bootstrap: str,
    target: str,
    workflow: str,
    accounts: list[str],
    concurrency: int = 16,
    *,
    name: str = "worker",
) -> WorkerRuntime:
    """A started worker (registered, consuming); `stop()` it. Also used by the tests."""
    entry_class = load_entrypoint(target)
    topics = settings.topics
    await ensure_topics(
        bootstrap, dict.fromkeys(topics.all(), settings.partitions), topics.configs()
    )
    history = await asyncio.to_thread(
        StoreHistory.open, settings.store, settings.keks(), settings.worker_cache_size
    )
    channel = CommandChannel(bootstrap, topics.commands, topics.replies)
    runtime: WorkerRuntime | None = None
    try:
        await channel.start()
        runtime = WorkerRuntime(
            bootstrap=bootstrap,
            events_topic=topics.events,
            group_id=group_id(settings, workflow),
            entry=entry_class(),
            workflow=workflow,
            accounts=accounts,
            concurrency=concurrency,
            history=history,
            channel=channel,
            metrics=WorkerMetrics(),
            name=name,
            log_content=settings.log_content,
        )
        module, _, class_name = target.partition(":")
        await runtime.register(class_name, module)
        await runtime.start()
    except BaseException:
        if runtime is not None:
            await runtime.stop()
        await channel.stop()
        history.close()
        raise
    return runtime


async def stop_worker(runtime: WorkerRuntime) -> None:
    await runtime.stop()
    await runtime.channel.stop()
    runtime.history.close()


async def run_worker(
    settings: Settings,
    bootstrap: str,
    target: str,
    workflow: str,
    accounts: list[str],
    concurrency: int,
    metrics_port: int | None = None,
) -> None:
    stop = stop_on_signals()
    runtime = await start_worker(settings, bootstrap, target, workflow, accounts, concurrency)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, settings.http_host, registry=runtime.metrics.registry)
    where = ", ".join(accounts) if accounts else "every account"
    print(
        f"Flowledger worker is running {target} as workflow {workflow!r} ({where}); "
        f"group {group_id(settings, workflow)}, concurrency {concurrency}. Ctrl-C stops it.",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        log.info("worker stopping: instances stop at their next step boundary")
        await stop_worker(runtime)
