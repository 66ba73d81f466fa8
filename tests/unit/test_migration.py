"""``compact_steps`` on the fake LogRewriter: how legacy step rows are grouped into blocks, what
is left as it was, which ids leave the event-id index, and that every step reads back equal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.persistence import StoredEvent

from lineage.application.migration import Compaction, compact_steps, keeps_id
from lineage.application.step_log import random_hex_ids
from lineage.codec.mapper import make_mapper
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.step_read import BlockCodec
from lineage.codec.steps import STEP_TOPIC
from lineage.domain.ids import step_stream_id
from lineage.domain.steps import StepRecorded
from tests.contract.test_log_rewriter import MemoryLogRewriter

MAPPER = make_mapper()
CODEC = BlockCodec(MAPPER)
NS = UUID("00000000-0000-0000-0000-0000000f00d5")
RUN_A, RUN_B = uuid5(NS, "a"), uuid5(NS, "b")
T = datetime(2026, 5, 1, tzinfo=UTC)


class Log:
    """Legacy step rows and other events, in log order, with each stream's version."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.ids: list[str] = []
        self.versions: dict[UUID, int] = {}

    def step(self, run: UUID, step: int, *, second: int = 0, actor: str = "me",
             event_id: UUID | None = None, epoch: int | None = None, **metrics: Any) -> None:
        stream = step_stream_id(run)
        version = self.versions[stream] = self.versions.get(stream, 0) + 1
        event_id = event_id or UUID(hex=next(random_hex_ids(1)))
        self.events.append(MAPPER.to_stored_event(StepRecorded(  # type: ignore[call-arg]
            originator_id=stream, originator_version=version, timestamp=T + timedelta(seconds=second),
            run_id=run, step=step, epoch=epoch, metrics=metrics or {"loss": 1.0 / step},
            durations=None, tokens=None, resources=None, event_id=event_id,
            occurred_at=T + timedelta(microseconds=step), occurred_at_raw=None, source="s",
            tenant_id="t", actor=actor)))
        self.ids.append(event_id.hex)

    def other(self, topic: str = "x:Other") -> None:
        stream = uuid5(NS, topic)
        version = self.versions[stream] = self.versions.get(stream, 0) + 1
        self.events.append(StoredEvent(stream, version, topic, b"{}"))
        self.ids.append(uuid4().hex)

    def rewriter(self) -> MemoryLogRewriter:
        return MemoryLogRewriter(self.events, self.ids)


def steps_of(rewriter: MemoryLogRewriter) -> list[tuple[Any, ...]]:
    """Every step the log holds, in log order, as the readers decode it."""
    found = []
    for row in rewriter.scan(0, 10_000, STEP_TOPIC):
        if row.topic in (STEP_TOPIC, STEPS_TOPIC):
            full = rewriter.rows[row.position]
            found.extend(step._replace(position=0, metrics_json="")
                         for step in CODEC.decode(full).decoded_steps())
    return found


def blocks_of(rewriter: MemoryLogRewriter) -> list[tuple[int, ...]]:
    """Each block as (steps it holds...) by step number."""
    return [tuple(CODEC.decode(row).steps) for row in rewriter.rows.values()
            if row.topic == STEPS_TOPIC]


def test_runs_of_consecutive_steps_of_one_stream_and_origin_become_one_block() -> None:
    log = Log()
    for n in range(1, 4):
        log.step(RUN_A, n)
    log.other()  # another event between
    log.step(RUN_A, 4)
    log.step(RUN_B, 1)  # another run
    log.step(RUN_A, 5)
    log.step(RUN_A, 6, second=1)  # another batch (recorded_at)
    log.step(RUN_A, 7, second=1, actor="else")  # another actor
    for n in range(8, 13):
        log.step(RUN_A, n, second=1, actor="else")
    rewriter = log.rewriter()
    before = steps_of(rewriter)
    others = {n: row for n, row in rewriter.rows.items() if row.topic != STEP_TOPIC}

    done = compact_steps(rewriter, CODEC, max_steps=4)

    assert blocks_of(rewriter) == [(1, 2, 3), (4,), (1,), (5,), (6,), (7, 8, 9, 10), (11, 12)]
    assert done == Compaction(steps=13, blocks=7, rows_left=0, ids_dropped=13 - 7)
    assert steps_of(rewriter) == before
    assert {n: row for n, row in rewriter.rows.items() if row.topic != STEPS_TOPIC} == others
    assert compact_steps(rewriter, CODEC) == Compaction()  # a second run: nothing to do


def test_a_group_never_spans_a_followers_position() -> None:
    log = Log()
    for n in range(1, 7):
        log.step(RUN_A, n)
    rewriter = log.rewriter()
    compact_steps(rewriter, CODEC, boundaries=[2, 5])
    assert blocks_of(rewriter) == [(1, 2), (3, 4, 5), (6,)]
    assert sorted(rewriter.rows) == [2, 5, 6]


def test_rows_that_cannot_become_a_block_stay_as_they_were() -> None:
    log = Log()
    log.step(RUN_A, 1)
    log.step(RUN_A, 2)
    log.events.append(StoredEvent(step_stream_id(RUN_B), 1, STEP_TOPIC, b"not json"))
    log.ids.append(uuid4().hex)
    log.step(RUN_A, 3)
    log.step(RUN_A, 4, epoch=-1)  # a block keeps -1 for "no epoch": it would read back None
    log.step(RUN_A, 5, flag=True)  # a bool would come back as 1.0
    log.step(RUN_A, 6, second=1)
    rewriter = log.rewriter()
    done = compact_steps(rewriter, CODEC)
    assert done.rows_left == 1 + 3 and done.steps == 3 and done.blocks == 2
    assert blocks_of(rewriter) == [(1, 2), (6,)]
    assert [row.topic for row in rewriter.rows.values()].count(STEP_TOPIC) == 4
    assert compact_steps(rewriter, CODEC).rows_left == 4  # counted again, never lost


def test_generated_step_ids_leave_the_index_and_chosen_ones_stay() -> None:
    log = Log()
    chosen = uuid4()
    for n in range(1, 5):
        log.step(RUN_A, n, event_id=chosen if n == 3 else None)
    rewriter = log.rewriter()
    first, second, _, fourth = log.ids
    compact_steps(rewriter, CODEC)
    assert rewriter.ids == {first, chosen.hex}  # the block's id is its first step's
    (block,) = [CODEC.decode(row) for row in rewriter.rows.values()]
    assert [block.step_id(i).hex for i in range(4)] == log.ids
    assert block.event_id.hex == first
    assert not keeps_id(UUID(hex=second)) and not keeps_id(UUID(hex=fourth))
    assert keeps_id(chosen) and keeps_id(uuid5(NS, "caller")) and keeps_id(UUID(int=7 << 76))


def test_progress_reaches_the_head() -> None:
    log = Log()
    for n in range(1, 6):
        log.step(RUN_A, n)
        log.other()
    rewriter = log.rewriter()
    seen: list[tuple[int, int]] = []
    compact_steps(rewriter, CODEC, progress=lambda at, head: seen.append((at, head)))
    assert seen[-1] == (10, 10)
