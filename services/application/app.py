"""The application service: decides commands against aggregates and saves the outcome.

Blocking (eventsourcing does I/O synchronously): the adapters call it off the event loop.
A batch of commands is decided in memory and saved in one transaction with the command records,
so a batch is applied entirely or not at all, and a crash between save and offset commit only
causes redelivery, which the command records answer as `duplicate`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import Environment, EnvType

from contracts.commands import AnyCommand, CreateInstance, CreateInstances
from contracts.keys import kafka_key, minted_instance_id
from contracts.limits import DEFAULT_MAX_STEPS_PER_INSTANCE, MAX_REASON_CHARS, bounded
from contracts.replies import Reply, ReplyError
from services.application.command_log import CommandRecord, command_digest, command_record_id
from services.application.handlers import HANDLERS, Decision
from services.application.sealing import (
    KeyRing,
    KeyStore,
    MemoryKeyStore,
    SealingMapper,
    UnknownKeyEncryptionKey,
)
from services.domain.errors import DomainError
from services.domain.instance import WorkflowInstance
from services.domain.workflow import Workflow

log = logging.getLogger(__name__)

MAX_RETRIES_ON_CONFLICT = 5

# The port "which of these aggregates have stored events?", asked once per batch (see `handle`).
# The default asks the store id by id; the composition root plugs in one query per batch
# (services.store.existing_ids).
ExistingIds = Callable[[Iterable[UUID]], set[UUID]]


@dataclass(frozen=True)
class Recorded:
    """An accepted command's reply and the digest of that command (None: stored before
    digests were kept, taken to match)."""

    reply: Reply
    digest: str | None

    def answers(self, digest: str) -> bool:
        return self.digest is None or self.digest == digest


class UnitOfWork:
    """The aggregates one batch has loaded or created, in memory until saved together."""

    def __init__(self, app: FlowledgerApplication) -> None:
        self._app = app
        self._loaded: dict[UUID, Aggregate | None] = {}
        self.replies_by_command: dict[str, Recorded] = {}
        # The most steps a run may have: the aggregate is given it, as it is given ids and time.
        self.max_steps = app.max_steps_per_instance

    def get(self, aggregate_id: UUID) -> Any:
        """The aggregate, or None when it does not exist."""
        if aggregate_id not in self._loaded:
            try:
                self._loaded[aggregate_id] = self._app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                self._loaded[aggregate_id] = None
        return self._loaded[aggregate_id]

    def know_absent(self, aggregate_ids: Iterable[UUID]) -> None:
        """Ids the store just said have no events: `get` answers None without asking again."""
        for aggregate_id in aggregate_ids:
            self._loaded.setdefault(aggregate_id, None)

    def add(self, aggregate: Aggregate) -> None:
        self._loaded[aggregate.id] = aggregate

    def recorded(self, command_id: str) -> Recorded | None:
        """What an earlier command with this id was answered, in this batch or in the store."""
        key = command_id.lower()  # as the record's id: UUIDs are case-insensitive
        if key in self.replies_by_command:
            return self.replies_by_command[key]
        record: CommandRecord | None = self.get(command_record_id(command_id))
        if record is None:
            return None
        return Recorded(msgspec.convert(record.reply, Reply), record.digest)

    def record(self, command: AnyCommand, digest: str, reply: Reply) -> None:
        self.replies_by_command[command.command_id.lower()] = Recorded(reply, digest)
        self.add(
            CommandRecord(
                command_id=command.command_id, reply=msgspec.to_builtins(reply), digest=digest
            )
        )

    def changed(self) -> list[Aggregate]:
        return [a for a in self._loaded.values() if a is not None and a.pending_events]

    def loaded_ids(self) -> list[UUID]:
        return list(self._loaded)


class FlowledgerApplication(Application):  # type: ignore[type-arg]
    name = "flowledger"

    # The key-encryption key of applications on the in-memory store (unit tests) only; a
    # stored database is given its keys by the composition root (`use_key_store`).
    IN_MEMORY_KEK = b"flowledger in-memory store KEK!!"

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        self.existing_ids: ExistingIds = self.existing_ids_one_by_one
        # Set by the composition root from FLOWLEDGER_MAX_STEPS_PER_INSTANCE.
        self.max_steps_per_instance = DEFAULT_MAX_STEPS_PER_INSTANCE
        self._keyring: KeyRing | None = None
        if isinstance(self.factory, POPOFactory):
            self.use_key_store(MemoryKeyStore(), [self.IN_MEMORY_KEK])

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            raise RuntimeError("no key store: the composition root must call use_key_store()")
        return self._keyring

    def construct_mapper(self) -> SealingMapper:
        return SealingMapper(transcoder=self.construct_transcoder())

    def use_key_store(self, store: KeyStore, keks: Sequence[bytes]) -> None:
        """Where the instances' data keys live, and the key-encryption keys, newest first."""
        if not isinstance(self.mapper, SealingMapper):
            raise TypeError("the application's mapper does not seal (MAPPER_TOPIC is set?)")
        self._keyring = self.mapper.keyring = KeyRing(store, keks)

    def erase(self, instance_ids: Sequence[UUID]) -> None:
        """Destroys the data keys of deleted instances: their stored content is unreadable."""
        self.keyring.destroy(instance_ids)

    def existing_ids_one_by_one(self, ids: Iterable[UUID]) -> set[UUID]:
        """The ids among `ids` with at least one stored event, on any store: one read through
        the recorder's public API per id (correct everywhere, slower than one query)."""
        return {i for i in ids if self.recorder.select_events(i, limit=1)}

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Fast-forward stays on whatever the environment says: each get of a cached aggregate
        then reads the events other commands members stored since, so a member that loses and
        regains a partition never decides on the state it cached before (no conflict would
        reveal a stale no-op decision, such as a `resume` judged on a cached `queued`)."""
        environment = super().construct_env(name, env)
        environment[self.AGGREGATE_CACHE_FASTFORWARD] = "y"
        environment.pop(f"{name.upper()}_{self.AGGREGATE_CACHE_FASTFORWARD}", None)
        return environment

    def handle(self, commands: Sequence[AnyCommand], now: datetime) -> list[Reply]:
        """Decides and saves a batch; on a write conflict falls back to one command at a time."""
        unit = UnitOfWork(self)
        candidates = {i for command in commands for i in _candidate_ids(command)}
        unit.know_absent(candidates - self.existing_ids(candidates))
        replies = [self._decide(unit, command, now) for command in commands]
        try:
            self._save(unit)
        except IntegrityError:
            # Another commands member wrote one of these aggregates first (a rebalance race).
            log.info("write conflict in a batch of %d; retrying one by one", len(commands))
            self._forget(unit)
            return [self.handle_one(command, now) for command in commands]
        return replies

    def handle_one(self, command: AnyCommand, now: datetime) -> Reply:
        for _ in range(MAX_RETRIES_ON_CONFLICT):
            unit = UnitOfWork(self)
            reply = self._decide(unit, command, now)
            try:
                self._save(unit)
                return reply
            except IntegrityError:
                self._forget(unit)  # reload the winner's state and decide again
        return _rejected(command, "store.conflict", "too many concurrent writers; send it again")

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """The library's save, for the aggregates a unit of work changed, without its two
        runtime-Protocol `isinstance` checks per object (~12 us an aggregate, two aggregates a
        create: ~9% of the commands role's CPU, bench/README.md "Step 4"). Anything else, or
        any keyword, goes the library's way."""
        if kwargs or not all(isinstance(o, Aggregate) for o in objs):
            return super().save(*objs, **kwargs)
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # the library's own hook, kept as it calls it
        return recordings

    def _save(self, unit: UnitOfWork) -> None:
        changed = unit.changed()
        # New instances' data keys in one read and one write for the batch, before the save
        # that seals with them (a key stored without its events, on a crash, is harmless).
        self.keyring.prepare(a.id for a in changed if isinstance(a, WorkflowInstance))
        self.save(*changed)

    def _forget(self, unit: UnitOfWork) -> None:
        """Drops a conflicting unit's aggregates from the cache, so the retry decides on what the
        store holds. The library's fast-forward (on by default) already reads newer events on
        each get; evicting also holds if it is turned off, when the cache is only updated by
        this member's own saves and so is stale once another member wrote."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in unit.loaded_ids():
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def _decide(self, unit: UnitOfWork, command: AnyCommand, now: datetime) -> Reply:
        digest = command_digest(command)
        recorded = unit.recorded(command.command_id)
        if recorded is not None:
            if not recorded.answers(digest):
                # Another command's reply would name its instance, maybe in another account.
                return _rejected(
                    command,
                    "command.id_reused",
                    f"command_id {command.command_id} was already used by a different "
                    "command; give every command a new command_id",
                )
            return recorded.reply.as_duplicate()
        try:
            decision: Decision = HANDLERS[type(command)](unit, command, now)
        except DomainError as error:
            return _rejected(command, error.code, error.message)
        except PersistenceError:
            raise  # the store is unwell: fail the batch so Kafka redelivers it
        except UnknownKeyEncryptionKey as error:
            # A deployment's key is missing, not a bug: said as such, and answerable with 503.
            return _rejected(command, "instance.key_unavailable", str(error))
        except Exception as error:
            # A bug must not turn one command into a poison pill that blocks its partition.
            log.exception(
                "command %s failed unexpectedly",
                command.command_id,
                extra={"command_id": command.command_id, "instance_key": _key(command)},
            )
            return _rejected(command, "command.failed", f"{type(error).__name__}: {error}")
        reply = decision.reply(command)
        unit.record(command, digest, reply)
        return reply

    # --- reads used by adapters and tests ----------------------------------------------------

    def get_instance(
        self, account_id: str, workflow_name: str, instance_id: str
    ) -> WorkflowInstance:
        return self.repository.get(
            WorkflowInstance.create_id(account_id, workflow_name, instance_id)
        )

    def get_workflow(self, account_id: str, workflow_name: str) -> Workflow:
        return self.repository.get(Workflow.create_id(account_id, workflow_name))

    def first_event(self, originator_id: UUID) -> Any:
        return next(iter(self.events.get(originator_id, lte=1)))


def _key(command: AnyCommand) -> str:
    """The command's Kafka key, for logs (the instance key when it names one instance)."""
    return kafka_key(command)


def _candidate_ids(command: AnyCommand) -> list[UUID]:
    """The aggregates a command may load: its record, its workflow and its instance(s)."""
    ids = [
        command_record_id(command.command_id),
        Workflow.create_id(command.account_id, command.workflow_name),
    ]
    if isinstance(command, CreateInstances):
        instance_ids = [
            body.instance_id or minted_instance_id(f"{command.command_id}:{index}")
            for index, body in enumerate(command.instances)
        ]
    elif isinstance(command, CreateInstance):
        instance_ids = [command.instance_id or minted_instance_id(command.command_id)]
    else:
        instance_ids = [i for i in [getattr(command, "instance_id", None)] if i]
    return ids + [
        WorkflowInstance.create_id(command.account_id, command.workflow_name, instance_id)
        for instance_id in instance_ids
    ]


def _rejected(command: AnyCommand, code: str, message: str) -> Reply:
    return Reply(
        command_id=command.command_id,
        outcome="rejected",
        error=ReplyError(code=code, message=bounded(message, MAX_REASON_CHARS)),
        account_id=command.account_id,
        workflow_name=command.workflow_name,
        instance_id=getattr(command, "instance_id", None),
    )
