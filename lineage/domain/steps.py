"""The step log: one append-only stream per run, never replayed into an object.

The stream id is ``ids.step_stream_id(run_id)``; the stream's own counter is its version, so a
step number may repeat (after a resume, or when a loop re-does a step). ``StepRecorded`` is a
plain domain event; how it is stored and read back fast is ``lineage.codec.steps``. Its topic
(``lineage.domain.steps:StepRecorded``) is in every stored step: keep the class here.
"""

from __future__ import annotations

from uuid import UUID

from lineage.domain.envelope import LogEvent


class StepRecorded(LogEvent):
    run_id: UUID
    step: int
    epoch: int | None
    metrics: dict[str, float]
    durations: dict[str, float] | None
    tokens: int | None
    resources: dict[str, float] | None


class StepsRecorded:
    """The stored topic of a step block: the steps of one run that one commit stored, many
    ``StepRecorded`` events to a row (``lineage.codec.step_block`` reads and writes it; the
    library's mapper never sees it). Not an event class of its own: each step in a block is
    a ``StepRecorded`` with its own id and version. Its topic is in every stored block: keep
    the class here."""
