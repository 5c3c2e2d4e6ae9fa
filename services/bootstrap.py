"""The composition root: builds the application, broker, views and roles from Settings.

Nothing in Flowledger connects to anything at import time; everything starts here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.persistence import TrackingRecorder
from fastapi import FastAPI

from flowledger._producer import ResilientProducer
from projections.read_models import READ_MODELS
from services.api.gateway import CommandGateway
from services.api.role import ApiRole
from services.application.app import FlowledgerApplication
from services.application.notification_log import NotificationLog
from services.infra.broker_probe import BrokerProbe
from services.infra.kafka_topics import ensure_topics
from services.infra.store_env import eventsourcing_env
from services.observability.metrics import Metrics, store_lag
from services.roles.commands import CommandsRole
from services.roles.follower import Follower, FollowingRole
from services.roles.projections import Projection, ProjectionsRole
from services.roles.relay import Relay, RelayRole
from services.roles.role import Role, RoleContext, Wakeup, within_drain_time
from services.roles.scheduler import TIMERS_NAME, SchedulerRole
from services.settings import Settings
from services.store.document_view import DocumentView, open_view
from services.store.existing_ids import one_query_per_batch
from services.store.health import StoreHealth
from services.store.key_table import open_key_table
from services.store.parked_table import ParkedTable, open_parked_table
from services.store.schema_lock import schema_lock
from services.store.timer_table import TimerTable, open_timer_table

log = logging.getLogger(__name__)

# Every role a process can run, in the order they start (they stop in the reverse order):
# the commands role first, so that followers started after it wake on its first save.
ROLE_TYPES: dict[str, Callable[[RoleContext], Role]] = {
    "commands": CommandsRole,
    "relay": RelayRole,
    "projections": ProjectionsRole,
    "api": ApiRole,
    "scheduler": SchedulerRole,
}
ROLES = tuple(ROLE_TYPES)
__all__ = ["READ_MODELS", "ROLES", "Service", "build_application", "open_store", "start_service"]


def build_application(settings: Settings) -> FlowledgerApplication:
    env = eventsourcing_env(settings.store)
    if env["PERSISTENCE_MODULE"].endswith("sqlite"):
        Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
    env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_size)
    app = FlowledgerApplication(env=env)
    app.existing_ids = one_query_per_batch(app)
    app.max_steps_per_instance = settings.max_steps_per_instance
    # Each view's documents and the rows of their lists (DocumentView.rows_table).
    view_tables = [f"view_{name}{part}" for name in READ_MODELS for part in ("", "_rows")]
    app.use_key_store(open_key_table(app.factory, view_tables), settings.keks())
    try:
        # Every process that opens the store, before it seals or reads anything: KEKs that
        # open none of the store's keys refuse the start (KeyEncryptionKeyMismatch).
        app.keyring.verify()
    except BaseException:
        app.close()
        raise
    return app


def check_keys(settings: Settings) -> None:
    """Raises KeyEncryptionKeyMismatch unless the configured KEKs open the store's keys: for
    a process that runs no role itself (the supervisor checks once for its children)."""
    with schema_lock(settings.store):
        build_application(settings).close()


def open_views(app: FlowledgerApplication) -> dict[str, DocumentView]:
    return {name: open_view(app.factory, name) for name in READ_MODELS}


@dataclass
class Store:
    """The event store, the read models, the relay's tracking table and the scheduler's
    timers, schema in place."""

    app: FlowledgerApplication
    views: dict[str, DocumentView]
    relay_tracking: TrackingRecorder
    timers: TimerTable[Any]
    parked: ParkedTable


def open_store(settings: Settings) -> Store:
    """Creates every table this process may use while holding the schema lock, so roles
    started in the same instant take turns instead of racing on the catalog."""
    with schema_lock(settings.store):
        app = build_application(settings)
        timers = open_timer_table(app.factory, TIMERS_NAME)
        parked = open_parked_table(app.factory)
        return Store(app, open_views(app), app.factory.tracking_recorder(), timers, parked)


@dataclass
class Service:
    """One process's roles and the parts they share; `stop()` stops them in reverse order."""

    settings: Settings
    app: FlowledgerApplication
    views: dict[str, DocumentView]
    producer: ResilientProducer
    probe: BrokerProbe
    store_health: StoreHealth
    metrics: Metrics
    stopping: asyncio.Event
    exit_stack: AsyncExitStack
    roles: dict[str, Role] = field(default_factory=dict)

    @property
    def api(self) -> FastAPI | None:
        role = self.roles.get("api")
        return role.api if isinstance(role, ApiRole) else None

    @property
    def gateway(self) -> CommandGateway | None:
        role = self.roles.get("api")
        return role.gateway if isinstance(role, ApiRole) else None

    @property
    def relay(self) -> Relay | None:
        role = self.roles.get("relay")
        return role.relay if isinstance(role, RelayRole) else None

    @property
    def projections(self) -> list[Projection]:
        role = self.roles.get("projections")
        return role.projections if isinstance(role, ProjectionsRole) else []

    @property
    def followers(self) -> list[Follower]:
        return [r.follower for r in self.roles.values() if isinstance(r, FollowingRole)]

    def readiness(self) -> dict[str, Any]:
        """Kafka, the store, this process's followers, and the lags and parked items, read
        from the store so that every role's process reports the whole deployment's. Kafka
        counts as up when the broker answers a connection and the last send of this process's
        producers was acknowledged; the store, when its last lag query (in the background)
        answered. Parked items do not make a process unready: its followers still work
        (docs/operations.md)."""
        kafka_ok = self.probe.reachable and self.producer.healthy
        if self.gateway is not None:
            kafka_ok = kafka_ok and self.gateway.healthy
        stuck = [f.name for f in self.followers if f.stuck_for() > self.settings.stuck_after_s]
        store_ok = self.store_health.reachable
        report = {
            "ready": kafka_ok and store_ok and not stuck,
            "kafka": "ok" if kafka_ok else "down",
            "store": "ok" if store_ok else "down",
            "stuck_followers": stuck,
            **self.store_health.lags,
        }
        scheduler = self.roles.get("scheduler")
        if isinstance(scheduler, SchedulerRole):
            report["scheduler"] = {
                "timers_pending": scheduler.scheduler.pending,
                "lag_seconds": scheduler.scheduler.lag_ms() / 1000,
            }
        return report

    async def stop(self) -> None:
        """Drains: every loop sees the signal and finishes its batch, the consumer commits,
        then everything closes, each part within a bounded time."""
        self.stopping.set()
        await self.exit_stack.aclose()


async def start_service(
    settings: Settings, bootstrap_servers: str, roles: tuple[str, ...] = ROLES
) -> Service:
    unknown = set(roles) - set(ROLE_TYPES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {', '.join(ROLES)}")
    topics = settings.topics
    await ensure_topics(
        bootstrap_servers, dict.fromkeys(topics.all(), settings.partitions), topics.configs()
    )
    store = await asyncio.to_thread(open_store, settings)
    stack = AsyncExitStack()
    try:
        return await _compose(stack, settings, bootstrap_servers, store, roles)
    except BaseException:
        await stack.aclose()
        raise


async def _compose(
    stack: AsyncExitStack,
    settings: Settings,
    bootstrap_servers: str,
    store: Store,
    roles: tuple[str, ...],
) -> Service:
    app, views = store.app, store.views
    stack.callback(app.close)
    stopping = asyncio.Event()
    producer = ResilientProducer(bootstrap_servers)
    await producer.start()
    # After the roles (exit order is reversed): replies and events of the last batches go out.
    stack.push_async_callback(within_drain_time, producer.stop(), "the producer")
    probe = BrokerProbe(bootstrap_servers)
    await stack.enter_async_context(_running(probe.run(stopping), "broker-probe"))
    notification_log = NotificationLog(app)
    store_health = StoreHealth(
        lambda: {**store_lag(notification_log.head, views), "parked": store.parked.summary()}
    )
    await store_health.check()
    await stack.enter_async_context(_running(store_health.run(stopping), "store-health"))
    service = Service(
        settings=settings,
        app=app,
        views=views,
        producer=producer,
        probe=probe,
        store_health=store_health,
        metrics=Metrics(),
        stopping=stopping,
        exit_stack=stack,
    )
    service.metrics.watch(service.readiness, store_health.refresh)
    context = _role_context(service, store, bootstrap_servers)
    for name in roles:
        role = ROLE_TYPES[name](context)
        await role.start()
        stack.push_async_callback(role.stop)
        service.roles[name] = role
    return service


def _role_context(service: Service, store: Store, bootstrap_servers: str) -> RoleContext:
    """What every role of this process shares: one producer, one wake-up, one stop signal."""
    return RoleContext(
        settings=service.settings,
        bootstrap_servers=bootstrap_servers,
        app=service.app,
        views=service.views,
        relay_tracking=store.relay_tracking,
        timers=store.timers,
        parked=store.parked,
        producer=service.producer,
        metrics=service.metrics,
        wakeup=Wakeup(),
        stopping=service.stopping,
        broker_reachable=lambda: service.probe.reachable,
        readiness=service.readiness,
        refresh_health=service.store_health.refresh,
    )


@asynccontextmanager
async def _running(loop: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """A background loop that ends when the service's `stopping` is set; cancelled if not."""
    task = asyncio.create_task(loop, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
