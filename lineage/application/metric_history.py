"""What ``metric_history`` hands back: ``MetricHistory`` (every point) and the bucket shape of
a downsampled history (``BUCKET_FIELDS``).

A run of ten million steps has ten million points per metric: as a list of tuples that is about
a gigabyte; as two compact arrays it is 160 MB. So the full history is two parallel arrays.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence

# The keys of each bucket of a downsampled history (``metric_history(run, name, buckets=N)``).
BUCKET_FIELDS = ("step_from", "step_to", "count", "min", "max", "last")


class MetricHistory:
    """A metric's points over a run, in the order logged: ``steps[k]`` and ``values[k]``.

    ``steps`` is an ``array("q")``; ``values`` an ``array("d")`` when every value is a float,
    an ``array("q")`` when every value is an int, and a list when the metric mixes them (a
    metric logged as ints keeps them). Iterating gives ``(step, value)`` pairs,
    ``history[k]`` the k-th pair, ``len`` the number of points; it compares equal to a list
    of pairs. Not thread-safe while being built (``extend``); read-only afterwards.
    """

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values: array[float] | array[int] | list[float] = array("d")

    def extend(self, steps: Sequence[int], values: Sequence[float]) -> None:
        """Append points (``steps[k]``, ``values[k]``), keeping the values' types."""
        if len(steps) != len(values):
            raise ValueError("steps and values differ in length")
        self.steps.extend(steps)
        self.values = _widened(self.values, values, first=len(self.steps) == len(values))
        self.values.extend(values)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps, self.values, strict=True)

    def __getitem__(self, k: int) -> tuple[int, float]:
        return self.steps[k], self.values[k]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MetricHistory | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable while built; equal to lists

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, list(self)[:3]))
        return f"MetricHistory([{shown}{', ...' if len(self) > 3 else ''}], points={len(self)})"


def _widened(held: array[float] | array[int] | list[float], values: Sequence[float], *,
             first: bool) -> array[float] | array[int] | list[float]:
    """The container ``held`` must become to take ``values`` without changing their types."""
    if isinstance(held, list):
        return held
    kinds = set(map(type, values))  # C speed: this runs over every point
    ints, floats = int in kinds, bool(kinds - {int})
    if first and ints and not floats:
        return array("q")
    if held.typecode == "d" and not ints:
        return held
    if held.typecode == "q" and not floats:
        return held
    return list(held)
