"""Step items as columns: the wire form of the common step (DESIGN §8).

Most steps a training loop logs are a step number, the same metrics as the step before, maybe
an epoch, and the time ``log_step`` took. A remote tracker sends a run of such steps as one item
of binary columns (base64 of little-endian 8-byte values, so a JSON body holds them), not one
row per step:

    {"t": "b", "run": RUN_ID, "ids": FIRST_EVENT_ID, "count": N, "steps": int64 x N,
     "ns": int64 x N (epoch ns), "epochs": int64 x N (-1: none) or null,
     "names": [name, ...], "kinds": "dq..." (per name: d float64, q int64),
     "values": [column of name 0, ...]}

Step ``i`` has the event id ``ids`` + ``i`` (as a row item's steps do), so a resend is the same
events. Steps with anything else (durations, tokens, resources, a time or an event id the
caller gave, metric names that change, a column mixing ints and floats) go as rows
(``wire.step_rows``). Neither side turns a number into text: that was most of the cost.

The server checks each column as a whole (``decode_columns``: lengths, ranges, each metric name
once: what ``log_step`` checks; any 8 bytes are a float64 or an int64, so the values need no
check of their own) and puts the steps on the session's writer queue as ``log_step`` would
(``put_columns``), without a Python call per step: this is the server's hot path. A bad column
refuses the whole item, naming the field.
"""

from __future__ import annotations

import sys
from array import array
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import countOf, itemgetter
from typing import Any, NamedTuple
from uuid import UUID, SafeUUID

from lineage.application import validation
from lineage.application.step_log import metrics_of
from lineage.errors import RunFinishedError, ValidationError

ID_SPACE = 1 << 128
_KIND = {frozenset((float,)): "d", frozenset((int,)): "q"}  # a column of one kind or rows
_BIG_ENDIAN = sys.byteorder == "big"
_uuid_new = UUID.__new__
_UNKNOWN = SafeUUID.unknown  # an enum member looked up once (each lookup is a property call)
_set = object.__setattr__


class StepColumns(NamedTuple):
    run: UUID
    first_id: int
    steps: list[int]
    ns: list[int]
    epochs: list[int | None] | None
    names: list[str]
    values: list[list[float]]
    ids: list[UUID] | None = None  # None: first_id onwards

    def event_hex(self) -> list[str]:
        """Each step's event id (hex)."""
        if self.ids is not None:
            return [event_id.hex for event_id in self.ids]
        return [f"{(self.first_id + i) % ID_SPACE:032x}" for i in range(len(self.steps))]

    def metric_dicts(self) -> list[dict[str, float]]:
        """One metrics dict a step (lengths were checked), built in C."""
        if not self.names:
            return [{} for _ in self.steps]
        return list(map(dict, map(zip, repeat(self.names), zip(*self.values, strict=True))))

    def without(self, known: set[str]) -> StepColumns:
        """The steps whose event ids are not in ``known`` (hex)."""
        keep = [i for i, event_id in enumerate(self.event_hex()) if event_id not in known]
        if len(keep) == len(self.steps):
            return self
        every = uuids(self.first_id, len(self.steps)) if self.ids is None else self.ids

        def picked(column: list[Any]) -> list[Any]:
            return [column[i] for i in keep]

        return StepColumns(self.run, self.first_id, picked(self.steps), picked(self.ns),
                           None if self.epochs is None else picked(self.epochs), self.names,
                           [picked(column) for column in self.values], picked(every))


# -- the client's side ---------------------------------------------------------------------------


def column_item(run_id: UUID, records: Sequence[tuple[Any, ...]],
                first_id: int) -> dict[str, Any] | None:
    """The column item of queued steps (``StepRecord`` order) when every one of them is the
    common step (see the module); None when one is not."""
    (_, steps, shapes, packed, epochs, durations, tokens, resources, ns, at, raws,
     event_ids) = zip(*records, strict=True)
    count = len(records)
    for column in (durations, tokens, resources, at, raws, event_ids):
        if column.count(None) != count:
            return None
    found = _metric_columns(records, shapes, packed)
    if found is None:
        return None
    names, values = found
    try:
        kinds = "".join(_KIND[frozenset(map(type, column))] for column in values)
        columns = [_pack(kind, column) for kind, column in zip(kinds, values, strict=True)]
        epoch_column = None if epochs.count(None) == count else _pack(
            "q", [-1 if epoch is None else epoch for epoch in epochs])
        return {"t": "b", "run": str(run_id), "ids": f"{first_id % ID_SPACE:032x}",
                "count": count, "steps": _pack("q", steps), "ns": _pack("q", ns),
                "epochs": epoch_column, "names": names, "kinds": kinds, "values": columns}
    except (KeyError, OverflowError):  # mixed kinds, an int past 64 bits
        return None


def _metric_columns(records: Sequence[tuple[Any, ...]], shapes: tuple[Any, ...],
                    packed: tuple[Any, ...]) -> tuple[list[str], list[Any]] | None:
    """Each metric name and its column of values; None when the steps' names differ."""
    shape = shapes[0]
    if shape is not None and countOf(shapes, shape) == len(records):  # log_step's packed floats
        grid = array("d", b"".join(packed))
        return list(shape), [grid[index::len(shape)] for index in range(len(shape))]
    metrics = list(map(metrics_of, records))
    names = list(metrics[0])
    if set(map(len, metrics)) != {len(names)}:
        return None
    try:
        return names, [list(map(itemgetter(name), metrics)) for name in names]
    except KeyError:  # a name missing
        return None


def _pack(code: str, values: Sequence[Any]) -> str:
    data = array(code, values)
    if _BIG_ENDIAN:
        data.byteswap()
    return b64encode(data.tobytes()).decode("ascii")


# -- the server's side ---------------------------------------------------------------------------


def decode_columns(item: dict[str, Any], where: str, run: UUID, first_id: int,
                   max_rows: int) -> StepColumns:
    """A column item, every value checked (ValidationError names the item and field)."""
    count = item.get("count")
    if type(count) is not int or not 0 < count <= max_rows:
        raise ValidationError(f"{where}.count", f"must be a number of steps from 1 to "
                              f"{max_rows}", count)
    steps = _unpack(item.get("steps"), "q", count, f"{where}.steps")
    ns = _unpack(item.get("ns"), "q", count, f"{where}.ns")
    if min(steps) < 0:
        raise ValidationError(f"{where}.steps", "must hold non-negative integers")
    if min(ns) < 1:
        raise ValidationError(f"{where}.ns", "must hold epoch nanoseconds (a step needs a time)")
    epochs: list[int | None] | None = None
    if item.get("epochs") is not None:
        found = _unpack(item.get("epochs"), "q", count, f"{where}.epochs")
        if min(found) < -1:
            raise ValidationError(f"{where}.epochs", "must hold non-negative integers (-1: none)")
        epochs = [None if epoch == -1 else epoch for epoch in found] if -1 in found else found
    names, kinds, values = item.get("names"), item.get("kinds"), item.get("values")
    if not isinstance(names, list) or len(names) > validation.METRICS_MAX or not all(
            type(n) is str for n in names) or len(set(names)) != len(names):
        raise ValidationError(f"{where}.names", f"must be a list of at most "
                              f"{validation.METRICS_MAX} distinct metric names", names)
    validation.metrics(dict.fromkeys(names, 0.0), f"{where}.metrics")  # each name's rule
    if not isinstance(kinds, str) or len(kinds) != len(names) or set(kinds) - {"d", "q"}:
        raise ValidationError(f"{where}.kinds", "must give each name's kind: d (float64) or q "
                              "(int64)", kinds)
    if not isinstance(values, list) or len(values) != len(names):
        raise ValidationError(f"{where}.values", "must hold one column of values per name")
    columns = [_unpack(column, kind, count, f"{where}.metrics[{name!r}]")
               for name, kind, column in zip(names, kinds, values, strict=True)]
    return StepColumns(run, first_id, steps, ns, epochs, names, columns)


def _unpack(text: Any, code: str, count: int, field: str) -> list[Any]:
    """``count`` 8-byte values (int64 ``q``, float64 ``d``: every bit pattern is a number)."""
    if not isinstance(text, str) or len(text) != 4 * -(-8 * count // 3):
        raise ValidationError(field, f"must be base64 of {count} little-endian 8-byte values")
    try:
        raw = b64decode(text, validate=True)
    except ValueError:  # binascii.Error
        raise ValidationError(field, "is not valid base64") from None
    data = array(code)
    data.frombytes(raw)
    if _BIG_ENDIAN:
        data.byteswap()
    return data.tolist()


def put_columns(run: Any, item: StepColumns, put: Callable[[tuple[Any, ...]], None]) -> None:
    """Queue ``item``'s steps on the writer as ``run.log_step`` would (``run`` a RunHandle:
    RunFinishedError once finished; its ``max_step`` moves on), with the item's event ids."""
    refuse_if_finished(run)
    count = len(item.steps)
    if not count:
        return
    nothing = repeat(None, count)
    records = zip(repeat(run.id.int, count), item.steps, repeat(None), item.metric_dicts(),
                  nothing if item.epochs is None else item.epochs, repeat(None), repeat(None),
                  repeat(None), item.ns, repeat(None), repeat(None),
                  uuids(item.first_id, count) if item.ids is None else item.ids)
    for record in records:
        put(record)
    taken(run, item)


def refuse_if_finished(run: Any) -> None:
    """RunFinishedError once ``run`` (a RunHandle) is finished, as ``log_step`` raises."""
    if run.finished_status is not None:
        raise RunFinishedError(run.id, run.finished_status, "steps")


def taken(run: Any, item: StepColumns) -> None:
    """``item``'s steps were taken: the run's ``max_step`` moves on, as ``log_step``'s does."""
    highest = max(item.steps)
    if run.max_step is None or highest > run.max_step:
        run.max_step = highest


def uuids(first: int, count: int) -> list[UUID]:
    """UUIDs ``first`` .. ``first + count - 1`` (mod 2**128), built without ``UUID()``'s
    argument parsing (a step's id costs a fifth as much)."""
    found = []
    for number in range(first, first + count):
        made = _uuid_new(UUID)
        _set(made, "int", number % ID_SPACE)
        _set(made, "is_safe", _UNKNOWN)
        found.append(made)
    return found
