"""The composition root: builds the application, broker, views and roles from Settings.

Nothing in Flowledger connects to anything at import time; everything starts here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.persistence import TrackingRecorder
from faststream.kafka import KafkaBroker

from projections import agent_run, cloudflare_instance, onfido_run, staged_instance, workflows
from projections.document_view import DocumentView, open_view
from services.api.app import create_api
from services.api.gateway import CommandGateway
from services.application.app import FlowledgerApplication
from services.infra.broker_probe import BrokerProbe
from services.infra.kafka_coordinator import await_group_coordinator
from services.infra.kafka_local import ensure_topics
from services.infra.store_env import eventsourcing_env
from services.metrics import Metrics, store_lag
from services.roles.commands import register_commands_role
from services.roles.follower import Follower, Wakeup
from services.roles.projections import Projection, ProjectionGroup, ReadModel
from services.roles.relay import Relay
from services.roles.resilient_producer import ResilientProducer
from services.settings import Settings
from services.store.health import StoreHealth
from services.store.schema_lock import schema_lock

log = logging.getLogger(__name__)

ROLES = ("commands", "relay", "projections", "api")
DRAIN_TIMEOUT_S = 15.0  # as FastStream's graceful_timeout for the commands batch in flight
# Every read model: a module with VIEW_NAME, apply and key_of (services.roles.projections).
READ_MODELS: dict[str, ReadModel] = {
    model.VIEW_NAME: model
    for model in (cloudflare_instance, agent_run, onfido_run, staged_instance, workflows)
}


def build_application(settings: Settings) -> FlowledgerApplication:
    env = eventsourcing_env(settings.store)
    if env["PERSISTENCE_MODULE"].endswith("sqlite"):
        Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
    env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_size)
    return FlowledgerApplication(env=env)


def open_views(app: FlowledgerApplication) -> dict[str, DocumentView]:
    return {name: open_view(app.factory, name) for name in READ_MODELS}


@dataclass
class Store:
    """The event store, the read models and the relay's tracking table, schema in place."""

    app: FlowledgerApplication
    views: dict[str, DocumentView]
    relay_tracking: TrackingRecorder


def open_store(settings: Settings) -> Store:
    """Creates every table this process may use while holding the schema lock, so roles
    started in the same instant take turns instead of racing on the catalog."""
    with schema_lock(settings.store):
        app = build_application(settings)
        return Store(app, open_views(app), app.factory.tracking_recorder())


@dataclass
class Service:
    settings: Settings
    app: FlowledgerApplication
    broker: KafkaBroker
    producer: ResilientProducer
    views: dict[str, DocumentView]
    probe: BrokerProbe
    store_health: StoreHealth
    api: Any = None
    gateway: CommandGateway | None = None
    relay: Relay | None = None
    projections: list[Projection] = field(default_factory=list)
    followers: list[Follower] = field(default_factory=list)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)

    def readiness(self) -> dict[str, Any]:
        """Kafka, the store, this process's followers, and the lags, read from the store so
        that every role's process reports the whole deployment's. Kafka counts as up when the
        broker answers a connection and the last send of this process's producers was
        acknowledged; the store, when its last lag query (in the background) answered."""
        kafka_ok = self.probe.reachable and self.producer.healthy
        if self.gateway is not None:
            kafka_ok = kafka_ok and self.gateway.healthy
        stuck = [f.name for f in self.followers if f.stuck_for() > self.settings.stuck_after_s]
        store_ok = self.store_health.reachable
        return {
            "ready": kafka_ok and store_ok and not stuck,
            "kafka": "ok" if kafka_ok else "down",
            "store": "ok" if store_ok else "down",
            "stuck_followers": stuck,
            **self.store_health.lags,
        }

    async def stop(self) -> None:
        """Drains: followers finish their batch, the consumer commits, then everything closes."""
        self.stop_event.set()
        if self.tasks:
            # Followers see the stop between batches; the relay's batch still needs the broker,
            # so they get to finish before it closes (a cancelled batch would only be redone).
            await asyncio.wait(self.tasks, timeout=DRAIN_TIMEOUT_S)
        # Each part gets a bounded time: with the broker away, a consumer's last commit or a
        # producer's flush would otherwise retry for ever, and SIGTERM would never finish.
        if self.gateway is not None:
            await _within(DRAIN_TIMEOUT_S, self.gateway.stop(), "the HTTP gateway")
        # Waits for the commands batch in flight and its commit.
        await _within(DRAIN_TIMEOUT_S, self.broker.stop(), "the commands consumer")
        # After the batch in flight has sent its replies.
        await _within(DRAIN_TIMEOUT_S, self.producer.stop(), "the producer")
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.app.close()


async def _within(seconds: float, stopping: Awaitable[Any], what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stopping
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; closing without it", what, seconds)
    except Exception:  # noqa: BLE001 - stopping goes on with the other parts
        log.exception("%s failed to stop cleanly", what)


async def start_service(
    settings: Settings, bootstrap_servers: str, roles: tuple[str, ...] = ROLES
) -> Service:
    topics = settings.topics
    await ensure_topics(
        bootstrap_servers, dict.fromkeys(topics.all(), settings.partitions), topics.configs()
    )
    store = await asyncio.to_thread(open_store, settings)
    app, views = store.app, store.views
    # Idempotent producer: a retried send cannot duplicate or reorder within a partition.
    broker = KafkaBroker(bootstrap_servers, enable_idempotence=True, logger=None)
    producer = ResilientProducer(bootstrap_servers)
    await producer.start()
    probe = BrokerProbe(bootstrap_servers)
    store_health = StoreHealth(lambda: store_lag(app, views))
    await store_health.check()
    service = Service(
        settings=settings,
        app=app,
        broker=broker,
        producer=producer,
        views=views,
        probe=probe,
        store_health=store_health,
    )
    service.metrics.watch(service.readiness)
    service.tasks.append(asyncio.create_task(probe.run(service.stop_event), name="broker-probe"))
    service.tasks.append(
        asyncio.create_task(store_health.run(service.stop_event), name="store-health")
    )
    wakeup = Wakeup()
    if "commands" in roles:
        register_commands_role(
            broker,
            producer,
            app,
            topics,
            settings.commands_group,
            settings.batch_max_records,
            wakeup.notify,
            metrics=service.metrics,
        )
        await await_group_coordinator(bootstrap_servers, settings.commands_group)
    await broker.start()

    def spawn(name: str, position: Any, handle: Any) -> None:
        follower = Follower(
            app,
            name,
            position,
            handle,
            wakeup.subscribe(),
            poll_interval_s=settings.poll_interval_s,
        )
        service.followers.append(follower)
        service.tasks.append(asyncio.create_task(follower.run(service.stop_event), name=name))

    if "relay" in roles:
        parked = service.metrics.parked_messages.labels(topics.events).inc
        service.relay = Relay(
            app, producer, topics.events, store.relay_tracking, on_parked=lambda _: parked()
        )
        spawn("relay", service.relay.position, service.relay.handle)
    if "projections" in roles:
        skips = service.metrics.projection_skips
        service.projections = [
            Projection(app, views[name], model, on_skip=skips.labels(name).inc)
            for name, model in READ_MODELS.items()
        ]
        group = ProjectionGroup(app, service.projections)
        spawn("projections", group.position, group.handle)
    if "api" in roles:
        service.gateway = CommandGateway(
            bootstrap_servers,
            topics.commands,
            topics.replies,
            head=app.recorder.max_notification_id,
            positions=lambda: [view.position() for view in views.values()],
            timeout_s=settings.write_timeout_s,
            broker_reachable=lambda: probe.reachable,
        )
        await service.gateway.start()
        service.api = create_api(
            tokens=settings.tokens(),
            views=views,
            gateway=service.gateway,
            base_url=settings.base_url,
            sdk_secret=settings.sdk_token_secret,
            sdk_token_ttl_s=settings.sdk_token_ttl_s,
            readiness=service.readiness,
        )
        service.api.state.metrics = service.metrics  # read by services.api.ops_routes
    return service
