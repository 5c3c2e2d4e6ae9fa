"""A Python client for Flowledger: send commands and await their replies, follow lifecycle
events, and read (or write through) the HTTP API.

```python
from flowledger.client import FlowledgerClient, HttpClient

async with FlowledgerClient("127.0.0.1:9092") as client:          # Kafka
    reply = await client.register_workflow("acc", "checkout")
    reply = await client.create_instance("acc", "checkout", "order-42", params={"order": 42})
    assert reply.outcome == "accepted", reply.error
    async for event in client.events(account_id="acc", instance_id="order-42",
                                     from_beginning=True):  # until you break
        print(event.version, type(event).__name__)                # InstanceCreated, ...

async with HttpClient("http://127.0.0.1:8787", token, account_id="acc") as http:  # HTTP
    doc = await http.get_instance("checkout", "order-42")
    then = await http.get_instance("checkout", "order-42", as_of="2025-01-02T03:04:05Z")
    events = await http.history("checkout", "order-42")
```

`FlowledgerClient` speaks the wire contract (`contracts.commands`, `contracts.replies`,
`contracts.events`, all msgspec Structs) on `{prefix}.commands`, `.replies` and `.events`:

- `send(command)` publishes the command with its Kafka key (`contracts.keys.kafka_key`) and
  returns its `Reply` (`accepted`, `duplicate` or `rejected`; a rejection is a reply, not an
  exception). The replies topic is read from its end as the client starts, every partition,
  without a consumer group: each client sees the replies to its own commands. No reply within
  the timeout raises `ReplyTimeout`; sending the same command again (same `command_id`) is
  safe, it is applied at most once.
- `events(...)` yields lifecycle events decoded into their contract types, filtered by
  account, workflow, instance and type, from the beginning of the topic or from now, each
  `event_id` once (delivery is at-least-once). Events of one instance come in version order;
  events of different instances interleave as their partitions are read.

`HttpClient` reads the Cloudflare-dialect API (instances, workflows, history, time travel) and
writes through it (the API waits for the reply and the read models); errors raise `ApiError`
with the API's message. The official `cloudflare` SDK works too
(`Cloudflare(api_token=..., base_url=URL + "/client/v4")`) for everything but the Flowledger
extensions (`history`, `as_of`).

This module imports only `contracts`, never the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer

from contracts.commands import (
    AnyCommand,
    ChangeStatus,
    CreateInstance,
    CreateInstances,
    DeleteInstance,
    InstanceBody,
    RegisterWorkflow,
    RestartFrom,
    SendEvent,
)
from contracts.events import AnyEvent, InstanceEvent, LifecycleEvent
from contracts.keys import kafka_key, new_command_id, raw_command_key
from contracts.limits import MAX_COMMAND_BYTES
from contracts.replies import Reply
from contracts.topics import Topics
from flowledger._producer import Outgoing, ResilientProducer, SendFailed
from flowledger._replies import ReplyListener, TopicMissing, consumer_at

__all__ = [
    "ApiError",
    "EventStream",
    "Pending",
    "FlowledgerClient",
    "HttpClient",
    "ReplyTimeout",
    "SendFailed",
    "TopicMissing",
    "new_command_id",
    "raw_command_key",
]

DEFAULT_REPLY_TIMEOUT_S = 30.0


class ReplyTimeout(TimeoutError):
    """No reply within the timeout. The command was published: it may still be applied, and
    sending it again with the same `command_id` applies it at most once."""

    def __init__(self, command_id: str, timeout_s: float) -> None:
        super().__init__(f"no reply to command {command_id} within {timeout_s:g} s")
        self.command_id = command_id


class FlowledgerClient:
    """Commands and their replies, and lifecycle events, over Kafka.

    Use it as an async context manager (or call `start()` and `close()`); one client serves
    any number of concurrent `send`s.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "flowledger",
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        dedupe_window: int = 100_000,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = Topics(topic_prefix)
        self.reply_timeout_s = reply_timeout_s
        self.dedupe_window = dedupe_window
        self._producer = ResilientProducer(bootstrap_servers)
        self._replies = ReplyListener(bootstrap_servers, self.topics.replies, "client")
        self._started = False
        self._followers: set[AIOKafkaConsumer] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connects, and positions the replies reader at the end of every partition: any
        reply to a command sent from now on is seen."""
        try:
            await self._producer.start()
            await self._replies.start()
        except BaseException:
            await self.close()
            raise
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self._replies.stop()  # cancels what still awaits a reply
        followers = list(self._followers)
        self._followers.clear()
        for consumer in followers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 15)
        await self._producer.stop()

    # --- commands ----------------------------------------------------------------------

    async def send(self, command: AnyCommand, *, timeout_s: float | None = None) -> Reply:
        """Publishes `command` and returns its reply (`ReplyTimeout` when none came)."""
        value = msgspec.json.encode(command)
        return await self.send_raw(
            value, kafka_key(command), command.command_id, timeout_s=timeout_s
        )

    async def send_raw(
        self, value: bytes, key: str, command_id: str, *, timeout_s: float | None = None
    ) -> Reply:
        """Publishes a command already encoded as JSON, keyed `key`, and returns the reply to
        `command_id` (its `command_id` field)."""
        if len(key.encode()) + len(value) > MAX_COMMAND_BYTES:
            raise ValueError(
                f"the command is {len(key.encode()) + len(value)} bytes with its key; the "
                f"limit is {MAX_COMMAND_BYTES}"
            )
        self._require_started()
        waiting = self._replies.expect(command_id)
        try:
            await self.publish_raw(value, key)
            timeout = self.reply_timeout_s if timeout_s is None else timeout_s
            try:
                async with asyncio.timeout(timeout):
                    return await waiting
            except TimeoutError:
                raise ReplyTimeout(command_id, timeout) from None
        finally:
            self._replies.forget(command_id)

    async def publish_raw(self, value: bytes, key: str | None) -> None:
        """Publishes bytes to the commands topic without waiting for any reply (SendFailed,
        a KafkaError, when the broker did not take them)."""
        self._require_started()
        message = Outgoing(self.topics.commands, value, key.encode() if key is not None else None)
        if await self._producer.send_all([message]):
            raise ValueError("the broker refused the command as too large")

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the client is not started: use `async with` or start()")

    async def register_workflow(
        self,
        account_id: str,
        workflow_name: str,
        *,
        class_name: str | None = None,
        script_name: str | None = None,
        schedules: Sequence[str] = (),
        command_id: str | None = None,
    ) -> Reply:
        return await self.send(
            RegisterWorkflow(
                command_id=command_id or new_command_id(),
                account_id=account_id,
                workflow_name=workflow_name,
                class_name=class_name,
                script_name=script_name,
                schedules=list(schedules),
            )
        )

    async def create_instance(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str | None = None,
        *,
        params: Any = None,
        command_id: str | None = None,
        **fields: Any,
    ) -> Reply:
        """Without `instance_id` the service mints one (in the reply). `fields`: the other
        fields of `CreateInstance` (`retention`, `timeout`, ...)."""
        return await self.send(
            CreateInstance(
                command_id=command_id or new_command_id(),
                account_id=account_id,
                workflow_name=workflow_name,
                instance_id=instance_id,
                params=params,
                **fields,
            )
        )

    async def create_instances(
        self,
        account_id: str,
        workflow_name: str,
        instances: Iterable[InstanceBody | dict[str, Any]],
        *,
        command_id: str | None = None,
    ) -> Reply:
        """1-100 instances (each an `InstanceBody` or its fields); existing ids are skipped."""
        bodies = [
            item if isinstance(item, InstanceBody) else msgspec.convert(item, InstanceBody)
            for item in instances
        ]
        return await self.send(
            CreateInstances(
                command_id=command_id or new_command_id(),
                account_id=account_id,
                workflow_name=workflow_name,
                instances=bodies,
            )
        )

    async def _change(
        self,
        action: Literal["pause", "resume", "terminate", "restart"],
        account_id: str,
        workflow_name: str,
        instance_id: str,
        command_id: str | None,
        rollback: bool = False,
        from_: RestartFrom | None = None,
    ) -> Reply:
        return await self.send(
            ChangeStatus(
                command_id=command_id or new_command_id(),
                account_id=account_id,
                workflow_name=workflow_name,
                instance_id=instance_id,
                action=action,
                rollback=rollback,
                from_=from_,
            )
        )

    async def pause(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        *,
        command_id: str | None = None,
    ) -> Reply:
        return await self._change("pause", account_id, workflow_name, instance_id, command_id)

    async def resume(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        *,
        command_id: str | None = None,
    ) -> Reply:
        return await self._change("resume", account_id, workflow_name, instance_id, command_id)

    async def terminate(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        *,
        rollback: bool = False,
        command_id: str | None = None,
    ) -> Reply:
        return await self._change(
            "terminate", account_id, workflow_name, instance_id, command_id, rollback=rollback
        )

    async def restart(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        *,
        from_step: str | None = None,
        command_id: str | None = None,
    ) -> Reply:
        """From the top, or from step `from_step` (the steps before it keep their outputs)."""
        from_ = RestartFrom(name=from_step) if from_step else None
        return await self._change(
            "restart", account_id, workflow_name, instance_id, command_id, from_=from_
        )

    async def send_event(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        event_type: str,
        payload: Any = None,
        *,
        command_id: str | None = None,
    ) -> Reply:
        return await self.send(
            SendEvent(
                command_id=command_id or new_command_id(),
                account_id=account_id,
                workflow_name=workflow_name,
                instance_id=instance_id,
                event_type=event_type,
                payload=payload,
            )
        )

    async def delete_instance(
        self,
        account_id: str,
        workflow_name: str,
        instance_id: str,
        *,
        command_id: str | None = None,
    ) -> Reply:
        """A finished instance only (else rejected `instance.running`); its content is erased."""
        return await self.send(
            DeleteInstance(
                command_id=command_id or new_command_id(),
                account_id=account_id,
                workflow_name=workflow_name,
                instance_id=instance_id,
            )
        )

    # --- lifecycle events --------------------------------------------------------------

    def events(
        self,
        *,
        account_id: str | None = None,
        workflow_name: str | None = None,
        instance_id: str | None = None,
        types: Iterable[str] | None = None,
        from_beginning: bool = False,
    ) -> EventStream:
        """Lifecycle events matching every filter given, each `event_id` once, for as long as
        the caller iterates. `from_beginning`: from the oldest event the topic keeps; else
        only events published from the moment the stream starts. `types`: event type names
        (`RunStarted`, ...).

        `async for event in client.events(...)` starts it at the first iteration; `async with
        client.events(...) as stream:` starts it on entry (events published after that are
        seen) and closes it on exit.
        """
        return EventStream(
            self,
            account_id=account_id,
            workflow_name=workflow_name,
            instance_id=instance_id,
            types=frozenset(types) if types is not None else None,
            from_beginning=from_beginning,
        )

    async def _follow(self, topic: str, from_beginning: bool) -> AIOKafkaConsumer:
        self._require_started()
        consumer = await consumer_at(self.bootstrap_servers, topic, from_beginning=from_beginning)
        self._followers.add(consumer)
        return consumer

    async def _unfollow(self, consumer: AIOKafkaConsumer) -> None:
        self._followers.discard(consumer)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 15)


class EventStream:
    """Lifecycle events from `{prefix}.events`, decoded, filtered and deduplicated by
    `event_id` (the last `dedupe_window` ids are remembered). An async iterator that never
    ends by itself; `aclose()` (or leaving its `async with`) stops its consumer."""

    def __init__(
        self,
        client: FlowledgerClient,
        *,
        account_id: str | None,
        workflow_name: str | None,
        instance_id: str | None,
        types: frozenset[str] | None,
        from_beginning: bool,
    ) -> None:
        self._client = client
        self._filters = (account_id, workflow_name, instance_id, types)
        self._from_beginning = from_beginning
        self._consumer: AIOKafkaConsumer | None = None
        self._closed = False
        self._pending: list[LifecycleEvent] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._decode = msgspec.json.Decoder(AnyEvent).decode

    async def start(self) -> None:
        """Positions the stream (at the topic's beginning, or its end); idempotent."""
        if self._closed:
            raise RuntimeError("the event stream is closed")
        if self._consumer is None:
            self._consumer = await self._client._follow(
                self._client.topics.events, self._from_beginning
            )

    async def aclose(self) -> None:
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await self._client._unfollow(consumer)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LifecycleEvent:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        while not self._pending:
            if self._consumer is None:
                raise StopAsyncIteration
            batches = await self._consumer.getmany(timeout_ms=500)
            for tp in sorted(batches, key=lambda tp: tp.partition):
                for record in batches[tp]:
                    event = self._accept(record.value or b"")
                    if event is not None:
                        self._pending.append(event)
        return self._pending.pop(0)

    def _accept(self, value: bytes) -> LifecycleEvent | None:
        try:
            event: LifecycleEvent = self._decode(value)
        except msgspec.DecodeError:
            return None  # not an event, or a type this client does not know yet
        if not _matches(event, *self._filters) or event.event_id in self._seen:
            return None
        self._seen[event.event_id] = None
        if len(self._seen) > self._client.dedupe_window:
            self._seen.popitem(last=False)
        return event


def _matches(
    event: LifecycleEvent,
    account_id: str | None,
    workflow_name: str | None,
    instance_id: str | None,
    types: frozenset[str] | None,
) -> bool:
    if account_id is not None and event.account_id != account_id:
        return False
    if workflow_name is not None and event.workflow_name != workflow_name:
        return False
    if instance_id is not None and (
        not isinstance(event, InstanceEvent) or event.instance_id != instance_id
    ):
        return False
    return types is None or type(event).__name__ in types


# --- HTTP ----------------------------------------------------------------------------------


class ApiError(Exception):
    """The API answered an error: its HTTP status and message (a rejected command's stable
    code is in the message, e.g. `instance.already_exists: ...`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Pending(Exception):
    """A write the API published but did not see answered within its write timeout (HTTP
    202): its reply will still come, on the replies topic, for `command_id`."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"command {command_id} was published; its reply has not come yet")
        self.command_id = command_id


class HttpClient:
    """The Cloudflare-dialect HTTP API of one account: reads, history and time travel, and
    writes (answered once the reply and the read models show them).

    Results are the `result` of the v4 envelope, as plain JSON values.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        account_id: str,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_id = account_id
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    @property
    def _workflows(self) -> str:
        return f"/client/v4/accounts/{self.account_id}/workflows"

    def _instances(self, workflow_name: str) -> str:
        return f"{self._workflows}/{workflow_name}/instances"

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> tuple[Any, dict[str, Any]]:
        """(result, result_info) of one call; `ApiError` for an error answer, `Pending` for a
        write not answered in time (202)."""
        kwargs: dict[str, Any] = {"params": {k: v for k, v in (params or {}).items() if v}}
        if body is not None:
            kwargs["json"] = body
        response = await self._http.request(method, path, **kwargs)
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            raise ApiError(response.status_code, f"HTTP {response.status_code}: {response.text}")
        if response.status_code >= 400 or envelope.get("success") is False:
            errors = envelope.get("errors") or [{"message": f"HTTP {response.status_code}"}]
            raise ApiError(response.status_code, "; ".join(str(e["message"]) for e in errors))
        if response.status_code == 202:
            raise Pending(str((envelope.get("result") or {}).get("command_id", "")))
        return envelope.get("result"), envelope.get("result_info") or {}

    async def _walk(
        self, path: str, params: dict[str, Any], limit: int | None
    ) -> list[dict[str, Any]]:
        """Every item of a paged list (following its cursor), or the first `limit`."""
        items: list[dict[str, Any]] = []
        cursor = None
        while limit is None or len(items) < limit:
            page_params = {**params, "per_page": 100, "cursor": cursor}
            result, info = await self.request("GET", path, params=page_params)
            items += result
            cursor = info.get("cursor")
            if not cursor or not result:
                break
        return items if limit is None else items[:limit]

    async def list_workflows(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            result, info = await self.request(
                "GET", self._workflows, params={"page": page, "per_page": 100}
            )
            items += result
            if not result or len(items) >= info.get("total_count", 0):
                return items
            page += 1

    async def get_workflow(self, workflow_name: str) -> dict[str, Any]:
        result, _ = await self.request("GET", f"{self._workflows}/{workflow_name}")
        return dict(result)

    async def register_workflow(
        self, workflow_name: str, *, class_name: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"class_name": class_name, **fields}
        result, _ = await self.request(
            "PUT", f"{self._workflows}/{workflow_name}", body={k: v for k, v in body.items() if v}
        )
        return dict(result)

    async def list_instances(
        self, workflow_name: str, *, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; all of them, or the first `limit`."""
        return await self._walk(self._instances(workflow_name), {"status": status}, limit)

    async def get_instance(
        self,
        workflow_name: str,
        instance_id: str,
        *,
        as_of: str | int | datetime | None = None,
        simple: bool = False,
    ) -> dict[str, Any]:
        """The instance now, or as it was at `as_of` (a time, or a version number); `simple`:
        without its steps."""
        moment = as_of.isoformat() if isinstance(as_of, datetime) else as_of
        result, _ = await self.request(
            "GET",
            f"{self._instances(workflow_name)}/{instance_id}",
            params={
                "as_of": None if moment is None else str(moment),
                "simple": "true" if simple else None,
            },
        )
        return dict(result)

    async def history(self, workflow_name: str, instance_id: str) -> list[dict[str, Any]]:
        """Every lifecycle event of the instance, in version order: `version`, `type`,
        `occurred_at`, `command_id`, `event_id` and `data`."""
        return await self._walk(f"{self._instances(workflow_name)}/{instance_id}/history", {}, None)

    async def create_instance(
        self, workflow_name: str, instance_id: str | None = None, *, params: Any = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"params": params}
        if instance_id:
            body["instance_id"] = instance_id
        result, _ = await self.request("POST", self._instances(workflow_name), body=body)
        return dict(result)

    async def change_status(
        self,
        workflow_name: str,
        instance_id: str,
        status: Literal["pause", "resume", "terminate", "restart"],
        **fields: Any,
    ) -> dict[str, Any]:
        result, _ = await self.request(
            "PATCH",
            f"{self._instances(workflow_name)}/{instance_id}/status",
            body={"status": status, **fields},
        )
        return dict(result)

    async def delete_instance(self, workflow_name: str, instance_id: str) -> dict[str, Any]:
        """Deletes a finished instance (`ApiError` 409 while it runs, 404 once gone)."""
        result, _ = await self.request("DELETE", f"{self._instances(workflow_name)}/{instance_id}")
        return dict(result)

    async def send_event(
        self, workflow_name: str, instance_id: str, event_type: str, payload: Any = None
    ) -> dict[str, Any]:
        path = f"{self._instances(workflow_name)}/{instance_id}/events/{event_type}"
        result, _ = await self.request("POST", path, body=payload)
        return dict(result)
