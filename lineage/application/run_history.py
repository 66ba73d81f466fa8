"""A run's history (``ReadAPI.run_history``): its own events and its chosen step events, in log
order, each with its log position (a step's is its block's), or one page of it.

A page is found from positions alone: the run's events and the step stream's blocks (each block
is stored at the version of its last step, so its steps are the versions after the previous
block's) are merged by position and counted without decoding anything; then only the page's
own events and steps are decoded. Paging through a run costs each page its own size plus one
look at the block positions, never a re-read of the pages before it.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Iterator
from operator import itemgetter
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper

from lineage.codec.step_read import BlockCodec, read_steps
from lineage.domain import ids
from lineage.errors import RunNotFoundError
from lineage.ports import EventStore

Range = tuple[int, int]  # first and last step stream version, inclusive


def chosen_ranges(steps: int | None, last: int) -> list[Range]:
    """The step versions a history shows: all (``steps`` None), none (0), or the first and
    the last ``steps`` of ``1..last``."""
    if steps is None:
        return [(1, last)] if last else []
    head = (1, min(steps, last))
    tail = (max(steps, last - steps) + 1, last)
    return [part for part in (head, tail) if part[0] <= part[1]]


def _block_pieces(versions: list[int], where: dict[int, int],
                  ranges: list[Range]) -> Iterator[tuple[int, int, None]]:
    """(position, how many chosen steps, None) per block holding any, in log order."""
    previous = 0
    for version in versions:
        count = sum(max(0, min(last, version) - max(first, previous + 1) + 1)
                    for first, last in ranges)
        if count:
            yield where[version], count, None
        previous = version


def _versions_at(ranges: list[Range], start: int, count: int) -> list[Range]:
    """The versions of chosen steps ``start .. start + count - 1`` (0-based, in order)."""
    found: list[Range] = []
    for first, last in ranges:
        size = last - first + 1
        if start >= size:
            start -= size
            continue
        take = min(size - start, count)
        found.append((first + start, first + start + take - 1))
        count -= take
        start = 0
        if not count:
            break
    return found


def run_history(store: EventStore, codec: BlockCodec, mapper: Mapper, run_id: UUID,
                steps: int | None, offset: int = 0,
                limit: int | None = None) -> list[tuple[int, Any]]:
    """(log position, event) pairs: ``limit`` of them (all when None) from ``offset``."""
    own = list(store.read_stream(run_id))
    if not own:
        raise RunNotFoundError(run_id)
    stream = ids.step_stream_id(run_id)
    at = store.positions(run_id, [event.originator_version for event in own])
    where = store.positions(stream) if steps != 0 else {}
    versions = sorted(where)
    ranges = chosen_ranges(steps, versions[-1] if versions else 0)
    pieces = heapq.merge(((at[event.originator_version], 1, event) for event in own),
                         _block_pieces(versions, where, ranges), key=itemgetter(0))
    skip, room = offset, math.inf if limit is None else limit
    mine: list[tuple[int, Any]] = []
    passed = first_step = taken = 0  # chosen steps before the page, and in it
    for position, count, event in pieces:
        if room <= 0:
            break
        if skip >= count:
            skip -= count
            passed += count if event is None else 0
            continue
        if event is not None:
            mine.append((position, mapper.to_domain_event(event)))
            room -= 1
        else:
            if not taken:
                first_step = passed + skip
            use = int(min(count - skip, room))
            taken += use
            room -= use
        skip = 0
    placed = [(where[versions[bisect_left(versions, step.seq)]], step.as_event(stream))
              for first, last in _versions_at(ranges, first_step, taken)
              for step in read_steps(store, codec, stream, first, last)]
    return list(heapq.merge(mine, placed, key=itemgetter(0)))
