"""Cutting the notification log into the batches the runner applies, one transaction each.

A batch holds at most ``max_notifications`` notifications and about ``max_steps`` steps:
a step block is one notification of up to thousands of steps (``lineage.codec.step_block``),
so counting notifications alone would let a batch hold millions of steps, and its memory
grow with them. Steps are counted from each block's header (``steps_in``), before anything is
decoded; a batch ends after the notification that reaches ``max_steps`` (so it
always holds at least one).

The log is read in pages sized from the last page's steps per notification, so a page of big
blocks holds about one batch and a page of other events up to ``max_notifications``; the
first page of a catch-up is small (``FIRST_PAGE``), so nothing reads thousands of blocks
before it knows their size. A page's notifications past a cut open the next batch, without
being read again. The read models are batching-invariant, so where the cuts fall changes
nothing in their rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from eventsourcing.persistence import Notification

from lineage.codec.block_peek import peek_count
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.steps import STEP_TOPIC
from lineage.ports import EventStore

BATCH = 4000  # notifications per batch, at most
BATCH_STEPS = 100_000  # steps per batch, about (one block more at most)
FIRST_PAGE = 100  # notifications in a catch-up's first page


def batches(store: EventStore, start: int, head: int, *, max_notifications: int = BATCH,
            max_steps: int = BATCH_STEPS) -> Iterator[Sequence[Notification]]:
    """The notifications from position ``start`` to ``head`` (and past it, up to the end of a
    page read before the end of the log), in batches (module doc). Reads as it goes."""
    page = min(FIRST_PAGE, max_notifications)
    while start <= head:
        notes = store.read_log(start, page)
        if not notes:
            return
        start = notes[-1].id + 1
        counts = [steps_in(note) for note in notes]
        page = next_page(len(notes), sum(counts), max_notifications, max_steps)
        first = 0
        while first < len(notes):
            stop = cut(counts, first, max_steps)
            yield notes[first:stop]
            first = stop


def cut(counts: Sequence[int], first: int, max_steps: int) -> int:
    """Where the batch starting at ``first`` ends (exclusive): after the notification that
    brings its steps to ``max_steps``, or at the end."""
    total = 0
    for index in range(first, len(counts)):
        total += counts[index]
        if total >= max_steps:
            return index + 1
    return len(counts)


def next_page(notes: int, steps: int, max_notifications: int, max_steps: int) -> int:
    """How many notifications to read next, from the last page: about a batch's worth of
    steps at its steps per notification."""
    if not steps:
        return max_notifications
    return max(1, min(max_notifications, max_steps * notes // steps))


def steps_in(note: Notification) -> int:
    """How many steps a notification holds, without decoding it: a block's count from its
    header (1 for a block too corrupt to say: decoding it says what is wrong), 1 for a step
    stored one to a row by the older layout, 0 for any other event."""
    if note.topic == STEPS_TOPIC:
        try:
            return peek_count(note.state)
        except ValueError:
            return 1
    return 1 if note.topic == STEP_TOPIC else 0
