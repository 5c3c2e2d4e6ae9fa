"""The examples run against an in-memory history: what `make run` shows, without Kafka."""

from __future__ import annotations

from examples.checkout import Checkout
from flowledger.worker import load_entrypoint
from tests.flowledger.harness import InMemoryFlowledger


async def test_checkout_retries_the_charge_sleeps_waits_and_ships() -> None:
    fl = InMemoryFlowledger()
    fl.create("order-1", {"order_id": "1", "amount": 500, "items": 3})
    assert await fl.run(Checkout(), "order-1") == "waiting"
    fl.do("SendEvent", "order-1", event_type="approved", payload={"by": "ann"})
    assert await fl.run(Checkout(), "order-1") == "complete"
    run = fl.instance("order-1").run
    assert [(s.name, s.attempts) for s in run.steps] == [
        ("reserve stock", 1),
        ("charge card", 2),
        ("fraud window", 0),
        ("shipping approval", 0),
        ("ship", 1),
    ]
    assert run.output["payment"] == {"charged": 500, "attempt": 2}
    assert run.output["shipment"] == {"shipped_from": "north", "tracking": "TRK-order-1"}


async def test_an_order_without_items_errors_at_once() -> None:
    fl = InMemoryFlowledger()
    fl.create("empty", {"order_id": "2", "amount": 5, "items": 0})
    assert await fl.run(Checkout(), "empty") == "errored"
    assert fl.instance("empty").run.error["name"] == "NonRetryableError"


def test_the_worker_loads_the_example_by_module_and_class() -> None:
    assert load_entrypoint("examples.checkout:Checkout") is Checkout
