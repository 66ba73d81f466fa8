"""How events become bytes: the library's JSON transcoder with UUID and datetime transcodings."""

from __future__ import annotations

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex


def make_mapper() -> Mapper:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)
