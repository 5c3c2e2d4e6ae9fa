"""How stored events are written as JSON: the event store library's format, with tags no
client can forge.

The library writes a value JSON cannot hold (a UUID, a datetime) as an object
`{"_type_": name, "_data_": ...}` and, reading back, turns every object of exactly those two
keys into such a value. Events also carry clients' own JSON (params, payloads, outputs), so a
client that sent `{"_type_": "x", "_data_": 1}` wrote an event nobody could read again: a
poison record in the store, which every follower would stop at. Here the tag keys begin with
the NUL character, which commands may not carry anywhere in their text (`contracts.text`), so
only Flowledger's own values can be read as tagged.

`TaggedMsgspecTranscoder` (the one in use, `services.infra.store_env.STORED_FORMAT`) writes the
very same bytes and reads them with msgspec's C decoder instead of `json` with a Python hook
called on every object: decoding is what each follower does to every event (issue 17, the
profile in bench/README.md). The stored format did not change: events written by either class
read the same through both (tests/services/store/test_transcoder.py).
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

TYPE_KEY = "\x00type"
DATA_KEY = "\x00data"
# TYPE_KEY as it appears in the stored bytes: JSON escapes NUL, and both `json` and msgspec
# write it so. Client text holds no NUL, so it is there only for a tag (or, harmlessly, when a
# client string holds those six characters themselves: then the slow path below runs).
_TAG_IN_JSON = b'"\\u0000type"'


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


class TaggedMsgspecTranscoder(TaggedJSONTranscoder):
    """The same stored format, decoded by msgspec: a tag is turned into its value where one
    is, instead of a Python call for every object of the document.

    Flowledger's tagged values (the `at` and `timestamp` datetimes, workflow and version UUIDs)
    are top-level fields of an event, so the common case is one C decode and a look at those
    fields; when the bytes hold more tags than were found there (a tagged value nested in a
    field, or inside another tag's data), the whole document is decoded bottom-up, as `json`'s
    object hook did. Anything msgspec refuses and `json` reads (NaN, lone surrogates, integers
    beyond 64 bits) is read by `json`, as before.
    """

    def decode(self, data: bytes) -> Any:
        if not isinstance(data, bytes):
            data = bytes(data)
        try:
            document = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return super().decode(data)
        tags = data.count(_TAG_IN_JSON)
        if not tags:
            return document
        if type(document) is dict:
            found = sum(
                1
                for value in document.values()
                if type(value) is dict and len(value) == 2 and TYPE_KEY in value
            )
            if found == tags:  # every tag is a top-level field's value: decode just those
                for key, value in document.items():
                    if type(value) is dict and len(value) == 2 and TYPE_KEY in value:
                        document[key] = self._decode_obj(value)
                return document
        return self._walk(document)

    def _walk(self, value: Any) -> Any:
        """Bottom-up, as `json`'s object hook: children first, then the object itself."""
        if type(value) is dict:
            return self._decode_obj({k: self._walk(v) for k, v in value.items()})
        if type(value) is list:
            return [self._walk(v) for v in value]
        return value
