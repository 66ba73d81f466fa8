"""Reading steps from a store: any stored step row (a block, or a step stored one to a row by
an older layout) as a ``StepBlock``, and a run's blocks and steps by stream version."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper

from lineage.codec.step_block import STEPS_TOPIC, Origin, epoch_us
from lineage.codec.step_decode import Column, StepBlock, decode_block
from lineage.codec.steps import STEP_TOPIC, DecodedStep, StepCodec
from lineage.domain.ids import step_stream_id
from lineage.ports import EventStore

# -- reading any stored step row ----------------------------------------------------------------


class BlockCodec:
    """Any stored step row as a ``StepBlock``: a block, or a step stored one to a row by an
    older layout (topic ``STEP_TOPIC``, the library's JSON), which reads as a block of one.
    Pure and thread-safe."""

    def __init__(self, mapper: Mapper) -> None:
        self.legacy = StepCodec(mapper)

    @staticmethod
    def is_step(topic: str) -> bool:
        return topic in (STEPS_TOPIC, STEP_TOPIC)

    def decode(self, stored: Any, position: int = 0) -> StepBlock:
        """``stored``: a StoredEvent or Notification of a step stream. ValueError for a row
        that is neither layout."""
        if stored.topic == STEPS_TOPIC:
            return decode_block(stored.state, position)
        return block_of_step(self.legacy.decode(stored, position))


def block_of_step(step: DecodedStep) -> StepBlock:
    """A step stored one to a row, as a block of one (its values as they are: a step beyond
    64 bits, which no block can hold, fails only where it is used)."""

    def single(values: dict[str, float] | None) -> tuple[None, dict[str, Column]] | None:
        return None if values is None else (None, {k: Column(None, [v]) for k, v in values.items()})

    return StepBlock(
        run_id=step.run_uuid, seq_from=step.seq, block_id=step.event_uuid.bytes,
        origin=Origin(epoch_us(datetime.fromisoformat(step.recorded_at)), step.source,
                      step.tenant_id, step.actor),
        steps=[step.step], occurred_us=[epoch_us(step.occurred_datetime)],
        epochs=None if step.epoch is None else [step.epoch],
        tokens=None if step.tokens is None else [step.tokens],
        columns={k: Column(None, [v]) for k, v in step.metrics.items()},
        durations=single(step.durations), resources=single(step.resources),
        raws={} if step.occurred_at_raw is None else {0: step.occurred_at_raw},
        ids={0: step.event_uuid.bytes}, position=step.position)


def read_blocks(store: EventStore, codec: BlockCodec, stream: UUID, first: int = 1,
                last: int | None = None) -> list[StepBlock]:
    """The blocks of step stream ``stream`` (``ids.step_stream_id``) that hold versions
    ``first..last`` (to the end when None), in order."""
    found: list[StepBlock] = []
    after = first - 1
    while last is None or after < last:
        # Each block holds at least one step: never ask for more blocks than steps wanted.
        rows = store.read_stream(stream, after=after or None,
                                 limit=64 if last is None else min(64, last - after))
        if not rows:
            break
        for row in rows:
            found.append(codec.decode(row))
            after = row.originator_version
            if last is not None and after >= last:
                break
    return found


def read_steps(store: EventStore, codec: BlockCodec, stream: UUID, first: int = 1,
               last: int | None = None) -> list[DecodedStep]:
    """The steps of step stream ``stream`` with versions ``first..last`` (to the end when
    None), in order."""
    return [block.decoded(i) for block in read_blocks(store, codec, stream, first, last)
            for i in block.slice_seq(first, block.seq_to if last is None else last)]


def last_block(store: EventStore, codec: BlockCodec, run_id: UUID) -> StepBlock | None:
    """The block holding the run's last step (None before its first step)."""
    rows = store.read_stream(step_stream_id(run_id), desc=True, limit=1)
    return codec.decode(rows[0]) if rows else None


def read_last_steps(store: EventStore, codec: BlockCodec, stream: UUID,
                    count: int) -> list[DecodedStep]:
    """The last ``count`` steps of step stream ``stream``, in order."""
    found: list[DecodedStep] = []
    before: list[StepBlock] = []
    taken = 0
    for row in store.read_stream(stream, desc=True, limit=count):
        block = codec.decode(row)
        before.append(block)
        taken += block.count
        if taken >= count:
            break
    for block in reversed(before):
        found.extend(block.decoded_steps())
    return found[max(len(found) - count, 0):]


def step_at(store: EventStore, codec: BlockCodec, stream: UUID, version: int) -> DecodedStep | None:
    """The step with stream version ``version`` (None when not stored)."""
    steps = read_steps(store, codec, stream, version, version)
    return steps[0] if steps else None
