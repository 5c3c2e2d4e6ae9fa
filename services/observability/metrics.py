"""Prometheus metrics of one Flowledger process, and the lags every process can read.

Each Service owns its registry (not prometheus_client's global one), so several services in
one process (tests) never mix their counts. Lags are not tracked in memory: they are read from
the store on each scrape, so any role's process reports the true lags of the whole deployment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from services.application.notification_log import RELAY_POSITION
from services.store.document_view import DocumentView

OUTCOMES = ("accepted", "duplicate", "rejected")
# Batches take milliseconds to seconds (a batch is up to FLOWLEDGER_BATCH_MAX_RECORDS commands).
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Readiness = Callable[[], Mapping[str, Any]]


def store_lag(head_of_log: Callable[[], int], views: Mapping[str, DocumentView]) -> dict[str, Any]:
    """The notification head and how far behind it the relay and each projection are.

    Positions are the followers' tracking rows in the shared store: the relay's row sits in
    the same tracking table the views' recorders read, so this holds in every role's process.
    A follower that never recorded a position is behind by the whole head.
    """
    head = head_of_log()
    relay: int | None = None
    projection_lag: dict[str, int] = {}
    for name, view in views.items():
        if relay is None:
            relay = view.max_tracking_id(RELAY_POSITION) or 0
        projection_lag[name] = head - (view.position() or 0)
    return {
        "notification_head": head,
        "relay_lag": None if relay is None else head - relay,
        "projection_lag": projection_lag,
    }


class Metrics:
    """Counters the roles update as they work, and gauges computed when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._refresh: Callable[[], Awaitable[None]] | None = None
        self.commands = Counter(
            "flowledger_commands",
            "Commands answered on the replies topic, by outcome (one per delivery).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # present at 0 from the start, so rates work at once
            self.commands.labels(outcome)
        self.batch_seconds = Histogram(
            "flowledger_command_batch_seconds",
            "Time to decide, store and answer one batch of commands.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "flowledger_dead_letters",
            "Records that could not be decoded, sent to the dead-letter topic.",
            registry=self.registry,
        )
        self.parked_messages = Counter(
            "flowledger_parked_messages",
            "Messages the broker refused as too large: logged and passed over (alert on any).",
            ["topic"],
            registry=self.registry,
        )
        self.projection_skips = Counter(
            "flowledger_projection_skipped_events",
            "Events a read model's fold failed on (a bug): skipped, logged, fixed by a rebuild.",
            ["projection"],
            registry=self.registry,
        )
        self.parked_items = Counter(
            "flowledger_parked_items",
            "Events or timers a follower could not handle (a fold or a command that raises): "
            "recorded in the store, logged, passed over; alert on any.",
            ["follower"],
            registry=self.registry,
        )
        self.timers_fired = Counter(
            "flowledger_timers_fired",
            "Timers the scheduler fired, by kind (sleep, backoff, wait, attempt, instance).",
            ["kind"],
            registry=self.registry,
        )

    def watch(self, readiness: Readiness, refresh: Callable[[], Awaitable[None]]) -> None:
        """Reports kafka/store health and lags from `readiness` at each scrape, after
        `refresh` (which asks the store off the event loop)."""
        self.registry.register(_ReadinessCollector(readiness))
        self._refresh = refresh

    async def refresh(self) -> None:
        """Brings the watched health up to date (nothing to do before `watch`)."""
        if self._refresh is not None:
            await self._refresh()

    def watch_scheduler(self, pending_and_lag: Callable[[], tuple[int, int]]) -> None:
        """Reports the scheduler's pending timers and lag (as of its last tick) at each
        scrape."""
        self.registry.register(_SchedulerCollector(pending_and_lag))

    def count_replies(self, outcomes: Iterable[str]) -> None:
        for outcome in outcomes:
            self.commands.labels(outcome).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _ReadinessCollector(Collector):
    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    def describe(self) -> list[Metric]:
        return []  # computed on scrape: nothing to query at registration time

    def collect(self) -> Iterable[Metric]:
        report = self._readiness()
        yield _gauge("flowledger_kafka_up", "1 when the Kafka client is running.", report["kafka"])
        yield _gauge("flowledger_store_up", "1 when the event store answers.", report["store"])
        if report.get("notification_head") is None:
            return  # the store is down: no lag to tell
        yield GaugeMetricFamily(
            "flowledger_notification_head",
            "Id of the last stored domain event (notification).",
            value=report["notification_head"],
        )
        if report.get("relay_lag") is not None:
            yield GaugeMetricFamily(
                "flowledger_relay_lag",
                "Stored events not yet published to the events topic.",
                value=report["relay_lag"],
            )
        lag = GaugeMetricFamily(
            "flowledger_projection_lag",
            "Stored events not yet applied to a read model.",
            labels=["projection"],
        )
        for name, value in sorted(report.get("projection_lag", {}).items()):
            lag.add_metric([name], value)
        yield lag
        parked = GaugeMetricFamily(
            "flowledger_parked",
            "Items parked in the store by each follower, whichever process parked them.",
            labels=["follower"],
        )
        for name, value in sorted((report.get("parked") or {}).get("by_follower", {}).items()):
            parked.add_metric([name], value)
        yield parked


class _SchedulerCollector(Collector):
    def __init__(self, pending_and_lag: Callable[[], tuple[int, int]]) -> None:
        self._pending_and_lag = pending_and_lag

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        pending, lag_ms = self._pending_and_lag()
        yield GaugeMetricFamily(
            "flowledger_timers_pending",
            "Instances with a timer pending (not paused, not yet fired).",
            value=pending,
        )
        yield GaugeMetricFamily(
            "flowledger_scheduler_lag_seconds",
            "How long the oldest due timer has waited to fire.",
            value=lag_ms / 1000,
        )


def _gauge(name: str, documentation: str, status: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=1 if status == "ok" else 0)
