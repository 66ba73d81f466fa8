"""The wire form of what a remote tracker sends (DESIGN §8): items of a batch, as JSON.

A batch is ``{"items": [...]}``, each item one of a step item of columns (the common step:
``lineage.remote.columns``) or

    {"t": "s", "run": RUN_ID, "ids": FIRST_EVENT_ID,
     "rows": [[step, metrics, epoch, durations, tokens, resources, occurred_ns, occurred_at
               (, event_id)], ...]}
    {"t": "c", "op": OP, "run": RUN_ID or null, "args": [...], "kwargs": {...},
     "id": EVENT_ID, "at": ISO_TIME, "loc": {uri: [size, "algorithm:digest"]}}

A step row is ``step_log.StepRecord`` less its run (``occurred_at`` an ISO time when the caller
gave one, else null and ``occurred_ns`` the time); its event id is the one the caller chose, else
the item's ``ids`` plus the row's index (ids given on the client, so a resend is the same
events; one number an item, not one UUID text a step); a call is a public method of the tracker
(``run`` null) or of a run handle, with the event id and time its envelope had on the client and
the locations of the local files it names (sized and hashed on the client: the server never
opens them). ``decode_batch`` checks the shape and raises ValidationError naming the item and
field; the values themselves are checked by the methods the server calls, as for a local call.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from lineage.application import validation
from lineage.application.artifacts import Location
from lineage.application.step_log import metrics_of
from lineage.errors import ValidationError
from lineage.remote.columns import ID_SPACE, StepColumns, decode_columns

TRACKER_OPS = ("start_run", "register_artifact", "move_alias", "resume_run")
RUN_OPS = ("log_eval", "save_checkpoint", "use_input", "record_failure", "finish",
           "begin_recovery", "renew_recovery_lease", "select_recovery_checkpoint",
           "reject_recovery_checkpoint", "complete_recovery", "fail_recovery", "exhaust_recovery")
# A remote run's heartbeat (``args``: the client's pid, the run's last step): the server
# appends it as the local heartbeat thread would (lineage.application.heartbeat).
HEARTBEAT = "heartbeat"
HANDLE_OPS = (*RUN_OPS, HEARTBEAT)
# A checkpoint a remote recovery hashed on the client (``args``: artifact id, ok, the digest
# observed, detail): the server records the verification; it never opens the file itself.
VERIFY = "record_verification"
SERVICE_OPS = (*TRACKER_OPS, VERIFY)
# Never taken from the wire: the envelope's id and time come from the item, waiting is the
# server's business.
RESERVED = frozenset({"event_id", "occurred_at", "wait", "self"})
MAX_ITEMS = 10_000
MAX_ROWS = 100_000
MAX_ARGS = 16


class StepRow(NamedTuple):
    step: Any
    metrics: Any
    epoch: Any
    durations: Any
    tokens: Any
    resources: Any
    occurred_ns: int
    occurred_at: str | None
    event_id: UUID


class Steps(NamedTuple):
    run: UUID
    rows: list[StepRow]


class Call(NamedTuple):
    op: str
    run: UUID | None
    args: list[Any]
    kwargs: dict[str, Any]
    event_id: UUID
    occurred_at: str
    locations: dict[str, Location]


# -- the client's side ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A call argument as JSON data: ids of refs and handles, paths as text, policies and other
    dataclasses as dicts (what the server's methods accept in their place)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(getattr(value, "id", None), UUID):  # ArtifactRef, RunHandle
        return str(value.id)
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    raise ValidationError("argument", f"cannot be sent to the server: {type(value).__name__}",
                          value)


def step_rows(run_id: UUID, records: Iterable[tuple[Any, ...]], first_id: int) -> dict[str, Any]:
    """A step item from queued steps (``StepRecord`` order); ids from ``first_id`` on."""
    return {"t": "s", "run": str(run_id), "ids": f"{first_id % ID_SPACE:032x}", "rows": [
        [r[1], metrics_of(r), r[4], r[5], r[6], r[7], r[8],
         None if r[9] is None else r[9].isoformat(), *(() if r[11] is None else (r[11].hex,))]
        for r in records]}


def call_item(op: str, run: UUID | None, args: tuple[Any, ...], kwargs: dict[str, Any],
              event_id: UUID, occurred_at: datetime,
              locations: Iterable[Location] = ()) -> dict[str, Any]:
    return {"t": "c", "op": op, "run": None if run is None else str(run), "args": plain(args),
            "kwargs": plain({k: v for k, v in kwargs.items() if k not in RESERVED}),
            "id": event_id.hex, "at": occurred_at.isoformat(),
            "loc": {loc.uri: [loc.size, f"{loc.checksum_algorithm}:{loc.checksum}"]
                    for loc in locations}}


# -- the server's side ---------------------------------------------------------------------------


def decode_batch(data: Any) -> tuple[list[Steps | Call | StepColumns], bool]:
    """The items of a decoded JSON batch, their shape checked (ValidationError names the item
    and the field), and whether the client sends it again (``"retry": true``: the server then
    leaves out the events it already holds); nothing is applied here."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ValidationError("items", 'the body must be a JSON object {"items": [...]}')
    if not isinstance(data.get("retry", False), bool):
        raise ValidationError("retry", "must be true or false", data.get("retry"))
    items = data["items"]
    if len(items) > MAX_ITEMS:
        raise ValidationError("items", f"at most {MAX_ITEMS} items a batch, got {len(items)}")
    rows = sum(step_count(i) for i in items if isinstance(i, dict))
    if rows > MAX_ROWS:
        raise ValidationError("items", f"at most {MAX_ROWS} steps a batch, got {rows}")
    return ([_item(item, f"items[{index}]") for index, item in enumerate(items)],
            bool(data.get("retry", False)))


def step_count(item: dict[str, Any]) -> int:
    """How many steps an item says it holds (0 for a call or a malformed item)."""
    if item.get("t") == "b":
        count = item.get("count")
        return count if type(count) is int and count > 0 else 0
    rows = item.get("rows") if item.get("t") == "s" else None
    return len(rows) if isinstance(rows, list) else 0


def _item(item: Any, where: str) -> Steps | Call | StepColumns:
    if not isinstance(item, dict) or item.get("t") not in ("s", "b", "c"):
        raise ValidationError(f"{where}.t", 'must be "s" (step rows), "b" (step columns) or '
                              '"c" (a call)', item)
    if item["t"] == "b":
        return decode_columns(item, where, _uuid(item.get("run"), f"{where}.run"),
                              _uuid(item.get("ids"), f"{where}.ids").int, MAX_ROWS)
    if item["t"] == "s":
        rows = item.get("rows")
        if not isinstance(rows, list):
            raise ValidationError(f"{where}.rows", "must be a list of step rows", rows)
        first = _uuid(item.get("ids"), f"{where}.ids").int
        return Steps(_uuid(item.get("run"), f"{where}.run"),
                     [_row(row, f"{where}.rows[{n}]", first + n) for n, row in enumerate(rows)])
    op = item.get("op")
    if op not in SERVICE_OPS + HANDLE_OPS:
        raise ValidationError(f"{where}.op", f"unknown operation {op!r}", op)
    run = item.get("run")
    if (op in HANDLE_OPS) != (run is not None):
        raise ValidationError(f"{where}.run",
                              f"{op} needs {'a run id' if op in HANDLE_OPS else 'none'}", run)
    args, kwargs = item.get("args", []), item.get("kwargs", {})
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise ValidationError(f"{where}.args", f"must be a list of at most {MAX_ARGS} values", args)
    if not isinstance(kwargs, dict) or len(kwargs) > MAX_ARGS or not all(
            isinstance(k, str) and k.isidentifier() and not k.startswith("_") and k not in RESERVED
            for k in kwargs):
        raise ValidationError(f"{where}.kwargs", "must map at most 16 argument names to values "
                              "(no event_id, occurred_at or wait: the item carries those)", kwargs)
    at = validation.text(item.get("at"), f"{where}.at", max_length=64)
    return Call(op, None if run is None else _uuid(run, f"{where}.run"), args, kwargs,
                _uuid(item.get("id"), f"{where}.id"), at, _locations(item.get("loc", {}), where))


def _row(row: Any, where: str, event_id: int) -> StepRow:
    if not isinstance(row, list) or len(row) not in (8, 9):
        raise ValidationError(where, "must be a list of 8 or 9 values (step, metrics, epoch, "
                              "durations, tokens, resources, occurred_ns, occurred_at[, "
                              "event_id])", row)
    ns = row[6]
    if isinstance(ns, bool) or not isinstance(ns, int) or not 0 <= ns <= validation.INT64_MAX:
        raise ValidationError(f"{where}.occurred_ns", "must be epoch nanoseconds (an integer)", ns)
    at = row[7]
    if at is not None:
        at = validation.text(at, f"{where}.occurred_at", max_length=64)
    elif ns == 0:
        raise ValidationError(f"{where}.occurred_ns", "a step needs a time", ns)
    step, metrics, epoch, durations, tokens, resources = row[:6]
    return StepRow(step, metrics, epoch, durations, tokens, resources, ns, at,
                   _uuid(row[8], f"{where}.event_id") if len(row) == 9
                   else UUID(int=event_id % ID_SPACE))


def _locations(data: Any, where: str) -> dict[str, Location]:
    if not isinstance(data, dict) or len(data) > 4:
        raise ValidationError(f"{where}.loc", "must map at most 4 file uris to [size, digest]",
                              data)
    found = {}
    for uri, described in data.items():
        validation.text(uri, f"{where}.loc", max_length=validation.URI_MAX)
        if not uri.startswith("file:///") or not isinstance(described, list) or len(described) != 2:
            raise ValidationError(f"{where}.loc", "must map file:///... uris to [size, "
                                  "'algorithm:digest']", uri)
        size, digest = described
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= validation.INT64_MAX:
            raise ValidationError(f"{where}.loc.size", "must be a number of bytes", size)
        algorithm, checksum = validation.checksum(digest, f"{where}.loc.checksum")
        found[uri] = Location(uri, None, size, algorithm, checksum)
    return found


def _uuid(value: Any, field: str) -> UUID:
    if isinstance(value, str) and len(value) <= 36:
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValidationError(field, "must be a UUID (text)", value)


def event_data(position: int, event: Any, mapper: Any) -> dict[str, Any]:
    """A stored event as the read API answers it: its log position and the stored form the
    mapper gives it (topic, stream, version and the JSON state), so a client's mapper rebuilds
    the same domain event."""
    stored = mapper.to_stored_event(event)
    return {"position": position, "topic": stored.topic, "stream": stored.originator_id.hex,
            "version": stored.originator_version, "state": stored.state.decode()}


def event_from(data: dict[str, Any], mapper: Any) -> tuple[int, Any]:
    """(position, domain event) from ``event_data``'s form."""
    stored = StoredEvent(UUID(data["stream"]), int(data["version"]), str(data["topic"]),
                         str(data["state"]).encode())
    return int(data["position"]), mapper.to_domain_event(stored)


def error_data(error: BaseException) -> dict[str, Any]:
    """What a client is told about a refused item: the error's class, message and field."""
    return {"type": type(error).__name__, "message": str(error),
            "field": getattr(error, "field", None)}
