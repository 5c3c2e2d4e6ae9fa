"""How stored events are written as JSON: the event store library's format, with tags no
client can forge.

The library writes a value JSON cannot hold (a UUID, a datetime) as an object
`{"_type_": name, "_data_": ...}` and, reading back, turns every object of exactly those two
keys into such a value. Events also carry clients' own JSON (params, payloads, outputs), so a
client that sent `{"_type_": "x", "_data_": 1}` wrote an event nobody could read again: a
poison record in the store, which every follower would stop at. Here the tag keys begin with
the NUL character, which commands may not carry anywhere in their text (`contracts.text`), so
only Flowledger's own values can be read as tagged.
"""

from __future__ import annotations

from typing import Any, cast

from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

TYPE_KEY = "\x00type"
DATA_KEY = "\x00data"


class TaggedJSONTranscoder(JSONTranscoder):
    def _encode_obj(self, o: Any) -> dict[str, Any]:
        transcoding = self.types.get(type(o))
        if transcoding is None:
            raise TranscodingNotRegisteredError(f"no transcoding for {type(o).__name__}")
        return {TYPE_KEY: transcoding.name, DATA_KEY: transcoding.encode(o)}

    def _decode_obj(self, d: dict[str, Any]) -> Any:
        if len(d) != 2 or TYPE_KEY not in d or DATA_KEY not in d:
            return d
        transcoding = self.names.get(cast("str", d[TYPE_KEY]))
        if transcoding is None:
            raise TranscodingNotRegisteredError(f"no transcoding named {d[TYPE_KEY]!r}")
        return transcoding.decode(d[DATA_KEY])
