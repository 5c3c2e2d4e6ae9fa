"""The stored-event transcoders: the msgspec reader reads exactly what the `json` one wrote
(the stored format did not change), and no client JSON reads back as a tagged value."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

from services.infra.store_env import STORED_FORMAT
from services.store.transcoder import TaggedJSONTranscoder, TaggedMsgspecTranscoder

AT = datetime(2026, 12, 1, 5, 6, 7, 891011, tzinfo=UTC)
ID = uuid.UUID("6d1c3ac4-7c1b-4a53-9d76-6f0b7b0ec1a9")


class Tally(Aggregate):
    def __init__(self) -> None:
        self.total = 0

    @event("Added")
    def add(self, amount: int) -> None:
        self.total += amount


class Pair:
    def __init__(self, left: Any, right: Any) -> None:
        self.left, self.right = left, right

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pair) and (self.left, self.right) == (other.left, other.right)


class PairAsList(Transcoding):
    """A transcoding whose data holds other tagged values: tags inside a tag's data."""

    type = Pair
    name = "pair"

    def encode(self, obj: Pair) -> list[Any]:
        return [obj.left, obj.right]

    def decode(self, data: list[Any]) -> Pair:
        return Pair(*data)


def _registered(transcoder: TaggedJSONTranscoder) -> TaggedJSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), PairAsList()):
        transcoder.register(transcoding)
    return transcoder


OLD = _registered(TaggedJSONTranscoder())
NEW = _registered(TaggedMsgspecTranscoder())

STATES: list[dict[str, Any]] = [
    # an event as Flowledger stores them: tags in top-level fields, client JSON beside
    {"timestamp": AT, "at": AT, "workflow_id": ID, "params": {"a": [1, 2.5, None, "x"]}},
    {"params": {"plain": True}},  # no tag at all
    {"nested": {"deep": [AT, {"id": ID}]}, "amount": Decimal("1.10")},  # tags below the top
    {"pair": Pair(ID, AT), "at": AT},  # tags inside a tag's data
    {"text": "a client string holding \\u0000type, literally", "at": AT},
    {"nan": float("nan"), "big": 2**80, "at": AT},  # what msgspec refuses and json reads
    {"list": [1, 2], "empty": {}, "unicode": "é 漢 \u2028"},
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return bool(type(a) is type(b) and a == b)


@pytest.mark.parametrize("state", STATES)
def test_the_stored_bytes_are_unchanged_and_read_the_same_both_ways(state: dict[str, Any]) -> None:
    stored = OLD.encode(state)
    assert NEW.encode(state) == stored  # the format did not change
    assert _same(NEW.decode(stored), OLD.decode(stored))
    assert _same(NEW.decode(memoryview(stored)), OLD.decode(stored))  # as a driver may hand it


def test_values_keep_their_types() -> None:
    decoded = NEW.decode(NEW.encode(STATES[0]))
    assert decoded["at"] == AT and isinstance(decoded["at"], datetime)
    assert decoded["workflow_id"] == ID and isinstance(decoded["workflow_id"], uuid.UUID)
    nested = NEW.decode(NEW.encode(STATES[2]))
    assert nested["nested"]["deep"] == [AT, {"id": ID}]
    assert nested["amount"] == Decimal("1.10")


@pytest.mark.parametrize(
    "client",
    [
        {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00"},  # the library's own tags
        {"type": "uuid_hex", "data": ID.hex},
    ],
)
def test_client_json_is_never_read_as_a_tagged_value(client: dict[str, Any]) -> None:
    for where in ({"params": client, "at": AT}, {"params": {"x": [client]}}, {"top": client}):
        assert NEW.decode(NEW.encode(where)) == {**where}


def test_an_unknown_tag_is_an_error_not_a_dict() -> None:
    stored = b'{"at":{"\\u0000type":"nope","\\u0000data":1}}'
    with pytest.raises(TranscodingNotRegisteredError):
        NEW.decode(stored)
    with pytest.raises(TranscodingNotRegisteredError):
        OLD.decode(stored)


def test_events_written_with_the_json_transcoder_load_with_the_msgspec_one(tmp_path: Any) -> None:
    """A store written by the previous STORED_FORMAT, read by the current one."""
    old_format = {"TRANSCODER_TOPIC": "services.store.transcoder:TaggedJSONTranscoder"}
    assert old_format != STORED_FORMAT
    store = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "CREATE_TABLE": "y"}
    store["SQLITE_DBNAME"] = str(tmp_path / "store.db")
    writer: Application[uuid.UUID] = Application(env={**store, **old_format})
    tally = Tally()
    tally.add(5)
    writer.save(tally)
    reader: Application[uuid.UUID] = Application(env={**store, **STORED_FORMAT})
    try:
        loaded: Any = reader.repository.get(tally.id)
        assert loaded.total == 5 and loaded.created_on == tally.created_on
        assert [type(e).__name__ for e in reader.events.get(tally.id)] == ["Created", "Added"]
        assert isinstance(reader.mapper.transcoder, TaggedMsgspecTranscoder)
    finally:
        writer.close()
        reader.close()
