"""Prometheus metrics of one worker process (its own registry, served on `--metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flowledger.replay import Observer

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


class WorkerMetrics(Observer):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.steps = Counter(
            "flowledger_worker_steps",
            "Steps the worker ended, by workflow and whether they succeeded",
            ["workflow", "outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "flowledger_worker_attempts",
            "Attempts the worker ran, by outcome (success, failure, timeout, non_retryable)",
            ["workflow", "outcome"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "flowledger_worker_attempt_seconds",
            "How long each attempt's code ran",
            ["workflow"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.wakes = Counter(
            "flowledger_worker_wakes",
            "Wake-ups of an instance, by how they ended (idle, suspended, stopped, completed, "
            "failed, error: tried again)",
            ["workflow", "outcome"],
            registry=self.registry,
        )
        self.blocked = Counter(
            "flowledger_worker_blocked_wakes",
            "Wake-ups failed because run() held its event loop (no await) past the watchdog's "
            "limit; each is tried again after a back-off",
            ["workflow"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "flowledger_worker_runs_in_flight",
            "Instances this worker is running right now",
            ["workflow"],
            registry=self.registry,
        )

    def attempt_ended(self, workflow: str, step: str, outcome: str, seconds: float) -> None:
        self.attempts.labels(workflow, outcome).inc()
        self.attempt_seconds.labels(workflow).observe(seconds)

    def step_ended(self, workflow: str, step: str, success: bool) -> None:
        self.steps.labels(workflow, "success" if success else "failure").inc()
