"""An order checkout: reserve stock, charge the card (the gateway fails once, so the step is
retried), let the fraud window pass (a sleep), wait for a person to approve shipping (an
event), then ship.

Run it beside the service (`make run` does both):

    .venv/bin/flowledger worker examples.checkout:Checkout --workflow checkout --account dev

then create an instance with params such as {"order_id": "42", "amount": 1999, "items": 2} and
send it an `approved` event with a payload such as {"by": "ann"} (README "Quick start").
"""

from __future__ import annotations

from typing import Any

from flowledger.workflows import NonRetryableError, WorkflowEntrypoint, WorkflowStep

RETRY_QUICKLY = {"retries": {"limit": 3, "delay": "1 second", "backoff": "constant"}}


class Checkout(WorkflowEntrypoint):
    async def run(self, event: dict[str, Any], step: WorkflowStep) -> Any:
        order = event["payload"] or {}

        @step.do("reserve stock")
        async def reserve() -> dict[str, Any]:
            items = order.get("items", 1)
            if not isinstance(items, int) or items < 1:
                raise NonRetryableError(f"an order needs at least one item, not {items!r}")
            return {"reserved": items, "warehouse": "north"}

        @step.do("charge card", config={**RETRY_QUICKLY, "timeout": "30 seconds"})
        async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
            if ctx["attempt"] == 1:  # the gateway's first answer is a timeout, every time
                raise ConnectionError("payment gateway did not answer")
            return {"charged": order.get("amount", 0), "attempt": ctx["attempt"]}

        @step.do("ship")
        async def ship(reserve: dict[str, Any]) -> dict[str, Any]:  # reserve's result
            return {"shipped_from": reserve["warehouse"], "tracking": f"TRK-{event['instanceId']}"}

        stock = await reserve()
        payment = await charge()
        await step.sleep("fraud window", "2 seconds")
        approval = await step.wait_for_event("shipping approval", "approved", timeout="1 hour")
        shipment = await ship()
        return {
            "order_id": order.get("order_id"),
            "stock": stock,
            "payment": payment,
            "approved_by": (approval["payload"] or {}).get("by"),
            "shipment": shipment,
        }
