"""One pass over the stored rows of the log: leaf digests, notification ids and the Merkle roots
at asked sizes (what ``lineage verify`` and the proofs recompute).

A long log is scanned by two processes at once when the composition root gives a
``FirstRows`` (``lineage.adapters.process_scan``): another process scans the rows up to a
position (its tree starts at leaf 0, so it builds it as it goes and hands back the tree's right
edge), while this one reads and hashes the rest; the rest's leaves then go onto that edge. The
tree, the roots and the digests are those of the one-process pass (a test compares them); only
the wall time differs (each process reads, decodes and hashes its own rows: on two cores close
to half the time). The helper says when it pays (``FirstRows.wanted``): not for a short log,
whose rows take less time than starting a process, nor on a machine with no core to spare.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lineage.ports import EventStore
from lineage.proof.canonical import LeafHasher, Row, leaf_digests
from lineage.proof.merkle import Frontier

PAGE = 5_000
FIRST_SHARE = 0.4  # of the positions, to the helper: it starts later, and builds its own tree


@dataclass
class Scan:
    """The log as one pass saw it: leaf digests, notification ids, roots at asked sizes, the
    tree's right edge at the end, and (when kept) every leaf hash."""

    digests: bytearray = field(default_factory=bytearray)
    positions: array = field(default_factory=lambda: array("q"))
    roots: dict[int, bytes] = field(default_factory=dict)
    leaves: list[bytes] | None = None
    frontier: Frontier = field(default_factory=Frontier)


class Waiter(Protocol):
    """Waits for the scan started elsewhere (None: not to be had); ``abandon``: stop it."""

    def __call__(self, *, abandon: bool = False) -> Scan | None: ...


class FirstRows(Protocol):
    """Scans the first rows of the log somewhere else (another process) meanwhile."""

    def wanted(self, rows: int) -> bool:
        """Whether scanning elsewhere pays now for a log of ``rows`` positions."""

    def start(self, end: int, sizes: frozenset[int]) -> Waiter:
        """Start ``scan(store, sizes, end=end)`` of the same store elsewhere; the callable
        waits for its ``Scan``: None when it could not be had there (the process did not
        start, or failed), and ``scan`` scans those rows itself (so a store error is raised
        here, as in the one-process pass)."""


def scan(store: EventStore, sizes: set[int], *, keep_leaves: bool = False,
         visit: Callable[[int, Row], None] | None = None, hasher: LeafHasher | None = None,
         end: int | None = None, first_rows: FirstRows | None = None) -> Scan:
    """Read the log once (``EventStore.read_rows``: plain tuples, no events built), up to
    position ``end`` when given: the root at each of ``sizes`` (those it reaches), digests and
    positions of every leaf; ``visit(leaf index, row)`` for each row (its first leaf) when
    given. ``first_rows``: scan the first part of a long log there, at the same time."""
    hasher = hasher or LeafHasher()
    last = 0 if first_rows is None else end if end is not None else store.max_position()
    if first_rows is None or keep_leaves or visit is not None or not first_rows.wanted(last):
        result = Scan(leaves=[] if keep_leaves else None)
        if 0 in sizes:
            result.roots[0] = result.frontier.root()
        _add_pages(result, row_pages(store, 0, end), hasher, sizes, visit)
        return result
    middle = int(last * FIRST_SHARE)
    wait = first_rows.start(middle, frozenset(sizes))
    rest = Scan(leaves=[])
    try:
        _add_pages(rest, row_pages(store, middle, end), hasher, None, None)
    except BaseException:
        wait(abandon=True)  # the other process stops too
        raise
    first = wait() or scan(store, sizes, hasher=hasher, end=middle)
    return _joined(first, rest, sizes)


def _add_pages(result: Scan, pages: Iterator[Sequence[Row]], hasher: LeafHasher,
               sizes: set[int] | None, visit: Callable[[int, Row], None] | None) -> None:
    """Hash ``pages`` into ``result``; the tree too unless ``sizes`` is None (the leaves are
    kept for a tree whose left part is not known yet)."""
    frontier, digests, positions, leaves = result.frontier, result.digests, result.positions, \
        result.leaves
    for page in pages:
        hashed, ids = hasher.leaves(page)
        if visit is not None:
            _visit(visit, len(positions), page, ids)
        positions.extend(ids)
        digests += leaf_digests(hashed)
        if leaves is not None:
            leaves.extend(hashed)
        if sizes is not None:
            _add_checking(frontier, hashed, sizes, result.roots)


def _joined(first: Scan, rest: Scan, sizes: set[int]) -> Scan:
    """The scan of the whole log from the scans of its first rows and of the rows after."""
    first.digests += rest.digests
    first.positions.extend(rest.positions)
    _add_checking(first.frontier, rest.leaves or [], sizes, first.roots)
    return first


def _add_checking(frontier: Frontier, hashed: list[bytes], sizes: set[int],
                  roots: dict[int, bytes]) -> None:
    """``frontier.extend(hashed)``, keeping the root at each of ``sizes`` it passes."""
    start, at = frontier.size, 0
    for size in sorted(size for size in sizes if start < size <= start + len(hashed)):
        frontier.extend(hashed[at:size - start])
        at = size - start
        roots[size] = frontier.root()
    frontier.extend(hashed[at:])


def _visit(visit: Callable[[int, Row], None], first: int, page: Sequence[Row],
           ids: Sequence[int]) -> None:
    """``visit`` each row of ``page`` with the index of its first leaf (``ids``: the row id
    of each leaf, starting at leaf ``first``)."""
    rows = iter(page)
    last = None
    for offset, row_id in enumerate(ids):
        if row_id != last:
            visit(first + offset, next(rows))
            last = row_id


def row_pages(store: EventStore, after: int = 0, end: int | None = None,
              size: int = PAGE) -> Iterator[Sequence[Row]]:
    """The rows after position ``after`` (up to ``end`` when given), a page at a time."""
    position = after
    while end is None or position < end:
        limit = size if end is None else min(size, end - position)
        page = store.read_rows(position + 1, limit)
        if page and end is not None and page[-1][0] > end:  # ids with gaps: past the end
            page = [row for row in page if row[0] <= end]
        if not page:
            return
        yield page
        position = page[-1][0]


def pages(store: EventStore, topics: Sequence[str] = (), size: int = PAGE) -> Iterator[Sequence[Any]]:
    position = 0
    while True:
        page = store.read_log(position + 1, size, topics)
        if not page:
            return
        yield page
        position = page[-1].id
