"""The worker process: which instances to wake, and when.

It consumes `{prefix}.events` in one consumer group per workflow (`{prefix}.worker.{NAME}`),
so each instance (its events share a partition, keyed by instance key) is owned by one worker
of the group at a time, and the workers of a workflow share its instances. Every lifecycle
event of an instance of NAME (in the `--account`s given, or any) wakes it: the engine
(`flowledger.replay.wake`) reads its history from the store and does what its state asks.
Events about an instance coalesce: one wake-up at a time per instance, and the events that
arrive meanwhile make one more after it. An event no newer than what the worker already saw
(its own commands' replies carry the version they made) wakes nothing.

Offsets: an event's offset is committed only once a wake-up that started after it has ended,
so a worker that dies leaves the events of everything it had in hand to the next owner, who
wakes those instances again (an attempt left in flight is taken over: flowledger/replay.py).

Ownership moves on a rebalance: the partitions revoked are released before the group
reassigns them. Their instances stop at the next step boundary, given `REVOKE_GRACE_S`;
those still inside a step then are cancelled (the step's attempt stays in flight for the
next owner to take over). So no instance runs on two workers at once while both are
connected to the broker; a worker cut off from it may still finish the step it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from contracts import commands as c
from contracts.replies import Reply
from flowledger._backoff import Backoff
from flowledger.replay import InstanceHistory, Outcome, wake
from flowledger.workflows import WorkflowEntrypoint
from services.worker.channel import CommandChannel
from services.worker.history import StoreHistory
from services.worker.isolation import BLOCKED_AFTER_S, BlockedWakeError, IsolatedWake
from services.worker.metrics import WorkerMetrics

log = logging.getLogger("flowledger.worker")

REVOKE_GRACE_S = 10.0
STOP_GRACE_S = 15.0
COMMIT_EVERY_S = 1.0
IDLE_SLOTS_KEPT = 10_000
# A failed wake-up (the store or broker away, run() blocking its loop) is tried again after
# this, doubling per failure in a row up to the cap.
RETRY_FIRST_S = 1.0
RETRY_CAP_S = 60.0
# Registration command ids: the same worker registering again is answered `duplicate`.
_REGISTRATION_IDS = uuid.UUID("3c2d8a61-0f4e-5b7a-9d1c-6e8f2a4b0c93")


class _EventHead(msgspec.Struct, forbid_unknown_fields=False):
    """The fields of a lifecycle event the worker routes on (the rest is not decoded)."""

    type: str
    account_id: str = ""
    workflow_name: str = ""
    instance_id: str | None = None
    version: int = 0


@dataclass
class _Slot:
    """One instance this worker owns: its wake-up task and the offsets it answers for."""

    account_id: str
    instance_id: str
    partition: TopicPartition
    waiting: list[int] = field(default_factory=list)  # offsets no wake-up has covered yet
    running: list[int] = field(default_factory=list)  # offsets the wake-up in hand covers
    known_version: int = 0
    task: asyncio.Task[None] | None = None
    stop: bool = False
    failures: int = 0  # wake-ups failed in a row: the next waits longer


class _SlotProgress:
    """The channel, noting the versions the instance's accepted commands made."""

    def __init__(self, channel: CommandChannel, slot: _Slot) -> None:
        self._channel = channel
        self._slot = slot

    async def send(self, command: c.AnyCommand) -> Reply:
        reply = await self._channel.send(command)
        if reply.outcome == "accepted" and reply.version is not None:
            self._slot.known_version = max(self._slot.known_version, reply.version)
        log.debug("%s %s -> %s", type(command).__name__, command.command_id, reply.outcome)
        return reply


def registration_id(account_id: str, workflow: str, class_name: str, module: str) -> str:
    return str(uuid.uuid5(_REGISTRATION_IDS, f"{account_id}/{workflow}:{module}:{class_name}"))


class WorkerRuntime:
    def __init__(
        self,
        *,
        bootstrap: str,
        events_topic: str,
        group_id: str,
        entry: WorkflowEntrypoint,
        workflow: str,
        accounts: Iterable[str],
        concurrency: int,
        history: StoreHistory,
        channel: CommandChannel,
        metrics: WorkerMetrics | None = None,
        name: str = "worker",
        log_content: bool = False,
        blocked_after_s: float = BLOCKED_AFTER_S,
    ) -> None:
        self.entry = entry
        self.log_content = log_content  # error messages in logs (else types and step names)
        self.blocked_after_s = blocked_after_s
        self.workflow = workflow
        self.accounts = frozenset(accounts)
        self.history = history
        self.channel = channel
        self.metrics = metrics or WorkerMetrics()
        self.name = name
        self._bootstrap = bootstrap
        self._events_topic = events_topic
        self._group_id = group_id
        self._concurrency = concurrency
        self._running = asyncio.Semaphore(concurrency)
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._pending: dict[TopicPartition, set[int]] = {}  # offsets not yet done
        self._next: dict[TopicPartition, int] = {}  # one past the last offset read
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.outcomes: list[tuple[str, Outcome]] = []  # the last wake-ups, for tests and logs

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group wakes every instance ever created
        )
        consumer.subscribe([self._events_topic], listener=_Listener(self))
        await consumer.start()
        self._consumer = consumer
        self._loop = asyncio.create_task(self._consume(consumer), name=f"{self.name}-events")

    async def stop(self) -> None:
        """Instances stop at their next step boundary within STOP_GRACE_S, then the rest are
        cancelled; done offsets are committed and the group is left."""
        self._stopping.set()
        if self._loop is not None:
            await self._loop
        await self._release(list(self._next), STOP_GRACE_S)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 15)

    async def register(self, class_name: str, module: str) -> None:
        """RegisterWorkflow in each account given, unless the workflow exists there: every
        RegisterWorkflow deploys a new version (and sets its schedules), which a worker
        restart should not do. Two workers registering at once send the same command id."""
        for account in sorted(self.accounts):
            exists = await asyncio.to_thread(self.history.workflow_exists, account, self.workflow)
            if exists:
                log.info("workflow %s/%s is registered", account, self.workflow)
                continue
            command = c.RegisterWorkflow(
                command_id=registration_id(account, self.workflow, class_name, module),
                account_id=account,
                workflow_name=self.workflow,
                class_name=class_name,
                script_name=module,
            )
            reply = await self.channel.send(command)
            if reply.outcome == "rejected":
                error = reply.error.message if reply.error else ""
                raise RuntimeError(f"registering {account}/{self.workflow}: {error}")
            log.info("registered workflow %s/%s (%s)", account, self.workflow, reply.outcome)

    # --- consuming ----------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        decode = msgspec.json.Decoder(_EventHead).decode
        backoff = Backoff(f"{self.name}: reading {self._events_topic}", log)
        last_commit = asyncio.get_running_loop().time()
        while not self._stopping.is_set():
            self._throttle(consumer)
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
            except Exception as error:  # the consumer reconnects by itself
                await asyncio.sleep(backoff.failed(error))
                continue
            backoff.succeeded()
            for tp, records in batches.items():
                for record in records:
                    self._read(tp, record.offset, record.value or b"", decode)
            now = asyncio.get_running_loop().time()
            if now - last_commit >= COMMIT_EVERY_S:
                last_commit = now
                await self._commit(consumer, list(self._next))

    def _read(
        self,
        tp: TopicPartition,
        offset: int,
        value: bytes,
        decode: Callable[[bytes], _EventHead],
    ) -> None:
        self._pending.setdefault(tp, set()).add(offset)
        self._next[tp] = offset + 1
        try:
            head = decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._done(tp, [offset])
            return
        if (
            head.instance_id is None
            or head.workflow_name != self.workflow
            or (self.accounts and head.account_id not in self.accounts)
        ):
            self._done(tp, [offset])
            return
        key = f"{head.account_id}/{head.workflow_name}/{head.instance_id}"
        slot = self._slots.get(key)
        if slot is None:
            slot = _Slot(head.account_id, head.instance_id, tp)
            self._slots[key] = slot
        self._slots.move_to_end(key)
        if head.version and head.version <= slot.known_version:
            self._done(tp, [offset])  # the worker saw this state already
            return
        slot.waiting.append(offset)
        if slot.task is None:
            task_name = f"{self.name} wake {key}"  # the worker first: step code may read it
            slot.task = asyncio.create_task(self._drive(key, slot), name=task_name)

    def _throttle(self, consumer: AIOKafkaConsumer) -> None:
        """Stops fetching while many more instances wait than run (the heartbeat goes on)."""
        busy = sum(1 for slot in self._slots.values() if slot.task is not None)
        if busy >= self._concurrency * 4:
            consumer.pause(*consumer.assignment())
        elif consumer.paused():
            consumer.resume(*consumer.paused())

    # --- waking -----------------------------------------------------------------------------

    async def _drive(self, key: str, slot: _Slot) -> None:
        try:
            while slot.waiting and not slot.stop:
                slot.running, slot.waiting = slot.waiting, []
                async with self._running:
                    if slot.stop:
                        break
                    outcome = await self._wake_once(key, slot)
                self._record(key, outcome)
                if outcome.kind == "error":  # not done: tried again after a back-off
                    slot.waiting = slot.running + slot.waiting
                    slot.running = []
                    slot.failures += 1
                    await self._back_off(slot)
                    continue
                slot.failures = 0
                self._done(slot.partition, slot.running)
                slot.running = []
        finally:
            slot.task = None
            self._forget_idle()

    async def _wake_once(self, key: str, slot: _Slot) -> Outcome:
        """One wake-up, on a thread and event loop of its own (services/worker/isolation.py);
        its history read and its commands go through this loop."""
        isolated = IsolatedWake(f"{self.name} wake {key}", self.blocked_after_s)
        progress = isolated.progress(_SlotProgress(self.channel, slot))

        async def load() -> InstanceHistory | None:
            return await isolated.on_worker_loop(self._load(slot))

        self.metrics.in_flight.labels(self.workflow).inc()
        try:
            return await isolated.run(
                lambda: wake(
                    self.entry,
                    load,
                    progress,
                    stop_requested=lambda: slot.stop,
                    observer=self.metrics,
                    log_content=self.log_content,
                )
            )
        except BlockedWakeError as error:
            self.metrics.blocked.labels(self.workflow).inc()
            return Outcome("error", f"{BlockedWakeError.__name__}: {error}")
        except Exception as error:  # the store or the broker is away
            return Outcome("error", type(error).__name__, content=str(error))
        finally:
            self.metrics.in_flight.labels(self.workflow).dec()

    async def _load(self, slot: _Slot) -> InstanceHistory | None:
        history = await self.history.load(slot.account_id, self.workflow, slot.instance_id)
        if history is not None:
            slot.known_version = max(slot.known_version, history.version)
        return history

    async def _back_off(self, slot: _Slot) -> None:
        """Waits before the next try; a slot told to stop stops waiting."""
        until = asyncio.get_running_loop().time() + min(
            RETRY_CAP_S, RETRY_FIRST_S * 2 ** (slot.failures - 1)
        )
        while not slot.stop and asyncio.get_running_loop().time() < until:
            await asyncio.sleep(0.1)

    def _record(self, key: str, outcome: Outcome) -> None:
        """Counts and logs how a wake-up ended; the log line carries user content (error
        messages) only when asked to (FLOWLEDGER_LOG_CONTENT)."""
        self.metrics.wakes.labels(self.workflow, outcome.kind).inc()
        self.outcomes.append((key, outcome))
        del self.outcomes[:-1000]
        if outcome.kind == "idle":
            return
        detail = outcome.detail
        if self.log_content and outcome.content:
            detail = f"{detail}: {outcome.content}" if detail else outcome.content
        failed = outcome.kind == "error"
        log.log(
            logging.WARNING if failed else logging.INFO,
            "%s: %s%s",
            key,
            "wake-up failed, tried again after a back-off" if failed else outcome.kind,
            f" ({detail})" if detail else "",
            extra={"instance_key": key},
        )

    def _forget_idle(self) -> None:
        """Idle slots only remember versions seen (an optimisation): keep the newest."""
        excess = len(self._slots) - IDLE_SLOTS_KEPT
        for key in list(self._slots):
            if excess <= 0:
                break
            slot = self._slots[key]
            if slot.task is None and not slot.waiting:
                del self._slots[key]
                excess -= 1

    # --- offsets and ownership ------------------------------------------------------------------

    def _done(self, tp: TopicPartition, offsets: list[int]) -> None:
        pending = self._pending.get(tp)
        if pending is not None:
            pending.difference_update(offsets)

    def _committable(self, tp: TopicPartition) -> int | None:
        pending = self._pending.get(tp)
        if pending:
            return min(pending)
        return self._next.get(tp)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        offsets = {}
        for tp in partitions:
            offset = self._committable(tp)
            if offset is not None and offset != self._committed.get(tp):
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as error:  # a rebalance under way, or the broker away: next time
            log.info(
                "%s: committing offsets failed: %s: %s", self.name, type(error).__name__, error
            )
            return
        self._committed.update(offsets)

    async def _release(self, partitions: list[TopicPartition], grace_s: float) -> None:
        """Stops the instances of `partitions` (at a step boundary, else cancelled after
        `grace_s`), commits what they finished and forgets them."""
        gone = set(partitions)
        slots = {key: s for key, s in self._slots.items() if s.partition in gone}
        for slot in slots.values():
            slot.stop = True
        tasks = [s.task for s in slots.values() if s.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("%s: cancelled %d instances still inside a step", self.name, len(late))
                await asyncio.wait(late, timeout=5)
        if self._consumer is not None and partitions:
            await self._commit(self._consumer, partitions)
        for key in slots:
            self._slots.pop(key, None)
        self.history.forget(slots)  # held no more: their cached histories go
        for tp in gone:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: WorkerRuntime) -> None:
        self._runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self._runtime._release(list(revoked), REVOKE_GRACE_S)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "%s: owns %d partitions of %s",
            self._runtime.name,
            len(assigned),
            self._runtime._events_topic,
        )
