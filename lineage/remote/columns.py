"""Step items as columns: the wire form of the common step (DESIGN §8).

Most steps a training loop logs are a step number, the same float metrics as the step before,
maybe an epoch, and the time ``log_step`` took. A remote tracker sends a run of such steps as
one item of columns, not one row per step:

    {"t": "b", "run": RUN_ID, "ids": FIRST_EVENT_ID, "steps": [...], "ns": [...],
     "epochs": [...] or null, "names": [name, ...], "values": [[values of name 0], ...]}

Step ``i`` has the event id ``ids`` + ``i`` (as a row item's steps do), so a resend is the same
events. Steps with anything else (durations, tokens, resources, a time or an event id the
caller gave, metric names that change) go as rows (``wire.step_rows``).

The server checks each column as a whole (``decode_columns``: types, ranges and lengths, each
metric name once, the same rules ``log_step`` applies) and puts the steps on the session's
writer queue as ``log_step`` would (``put_columns``), without a Python call per step: this is
the server's hot path. A bad column refuses the whole item, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple
from uuid import UUID, SafeUUID

from lineage.application import validation
from lineage.errors import RunFinishedError, ValidationError

ID_SPACE = 1 << 128
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT, _FLOAT, _NONE = int, float, type(None)
_NUMBERS = frozenset((_INT, _FLOAT))
_uuid_new = UUID.__new__
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
    (_, steps, metrics, epochs, durations, tokens, resources, ns, at, raws,
     event_ids) = zip(*records, strict=True)
    count = len(records)
    for column in (durations, tokens, resources, at, raws, event_ids):
        if column.count(None) != count:
            return None
    first = metrics[0]
    names = list(first)
    if set(map(len, metrics)) != {len(names)}:
        return None
    try:
        values = [list(map(itemgetter(name), metrics)) for name in names]
    except KeyError:
        return None
    return {"t": "b", "run": str(run_id), "ids": f"{first_id % ID_SPACE:032x}",
            "steps": list(steps), "ns": list(ns),
            "epochs": None if epochs.count(None) == count else list(epochs),
            "names": names, "values": values}


# -- the server's side ---------------------------------------------------------------------------


def decode_columns(item: dict[str, Any], where: str, run: UUID, first_id: int,
                   max_rows: int) -> StepColumns:
    """A column item, every value checked (ValidationError names the item and field)."""
    steps, ns, epochs = item.get("steps"), item.get("ns"), item.get("epochs")
    names, values = item.get("names"), item.get("values")
    if not isinstance(steps, list) or len(steps) > max_rows:
        raise ValidationError(f"{where}.steps", f"must be a list of at most {max_rows} steps",
                              type(steps).__name__)
    count = len(steps)
    _ints(steps, f"{where}.steps", count, 0)
    _ints(ns, f"{where}.ns", count, 1)
    if epochs is not None:
        _ints(epochs, f"{where}.epochs", count, 0, nones=True)
    if not isinstance(names, list) or len(names) > validation.METRICS_MAX or len(
            set(map(str, names))) != len(names) or not all(type(n) is str for n in names):
        raise ValidationError(f"{where}.names", f"must be a list of at most "
                              f"{validation.METRICS_MAX} distinct metric names", names)
    validation.metrics(dict.fromkeys(names, 0.0), f"{where}.metrics")  # each name's rule
    if not isinstance(values, list) or len(values) != len(names):
        raise ValidationError(f"{where}.values", "must hold one list of values per name")
    for name, column in zip(names, values, strict=True):
        _numbers(column, f"{where}.metrics[{name!r}]", count)
    return StepColumns(run, first_id, steps, ns, epochs, names, values)  # type: ignore[arg-type]


def _ints(column: Any, field: str, count: int, low: int, *, nones: bool = False) -> None:
    if not isinstance(column, list) or len(column) != count:
        raise ValidationError(field, f"must be a list of {count} values")
    kinds = set(map(type, column))
    if nones:
        kinds.discard(_NONE)
        column = [value for value in column if value is not None]
    if kinds - {_INT}:
        raise ValidationError(field, "must hold non-negative integers",
                              sorted(kind.__name__ for kind in kinds))
    if column and (min(column) < low or max(column) > INT64_MAX):
        raise ValidationError(field, f"must hold integers from {low} to {INT64_MAX}")


def _numbers(column: Any, field: str, count: int) -> None:
    if not isinstance(column, list) or len(column) != count:
        raise ValidationError(field, f"must be a list of {count} numbers")
    kinds = set(map(type, column))
    if not kinds <= _NUMBERS:
        raise ValidationError(field, "must hold numbers",
                              sorted(kind.__name__ for kind in kinds))
    if _INT in kinds:
        ints = [value for value in column if type(value) is int]
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            raise ValidationError(field, "must fit in a 64-bit integer (what every store "
                                  "holds); pass a float for a larger value")


def put_columns(run: Any, item: StepColumns, put: Callable[[tuple[Any, ...]], None]) -> None:
    """Queue ``item``'s steps on the writer as ``run.log_step`` would (``run`` a RunHandle:
    RunFinishedError once finished; its ``max_step`` moves on), with the item's event ids."""
    if run.finished_status is not None:
        raise RunFinishedError(run.id, run.finished_status, "steps")
    count = len(item.steps)
    if not count:
        return
    if item.names:  # lengths were checked: one dict a step, built in C
        dicts = list(map(dict, map(zip, repeat(item.names), zip(*item.values, strict=True))))
    else:
        dicts = [{} for _ in range(count)]
    nothing = repeat(None, count)
    records = zip(repeat(run.id, count), item.steps, dicts,
                  nothing if item.epochs is None else item.epochs, repeat(None), repeat(None),
                  repeat(None), item.ns, repeat(None), repeat(None),
                  uuids(item.first_id, count) if item.ids is None else item.ids)
    for record in records:
        put(record)
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
        _set(made, "is_safe", SafeUUID.unknown)
        found.append(made)
    return found
