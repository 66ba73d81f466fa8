"""The one trace identity: which spans a run has, their ids, parents and step grouping.

Both the read model (``lineage trace --json``, ``lineage.projections.traces``) and the OTLP span
builder (``lineage.spans.builder``) take every id from here, so a span id in a trace UI is the
span id in the LineageIR trace of the same events.

- **Trace id** = the run id's 16 bytes (``run_id.hex`` finds it in Jaeger).
- **Span ids** are 8 bytes: BLAKE2b-64 of a stored id, personalised by the span's kind (so two
  kinds never share an id), with the first byte's top bits set to ``10`` (never zero, and see
  ``lineage_span_id``):

  ==============  ==========================  ==========================================
  kind            hashed                       the span
  ==============  ==========================  ==========================================
  ``run``         run id                       the root ``train run`` span (no parent), from
                                               ``Started``: a running run's spans have it
  ``finish``      run id                       ``finish run``: start to (first) finish
  ``steps``       run id + group number        ``train steps``: one per step group
  ``checkpoint``  ``CheckpointSaved`` id       ``save checkpoint``
  ``evaluation``  ``EvaluationRecorded`` id    ``evaluate``
  ``failure``     ``FailureDetected`` id       ``detect failure``
  ``recovery``    run id + attempt number      ``recover run``: one per attempt, from its
                                               ``RecoveryStarted`` to the event that closes
                                               it (completed, failed, exhausted)
  ``recovery``    ``RecoveryExhausted`` id     ``recover run`` of an exhaustion recorded
                                               when no attempt was open
  ``best``        ``BestCheckpointChanged`` id ``select best checkpoint``
  ``retention``   ``Artifact.Retired`` or      ``retire checkpoint`` / ``delete checkpoint``,
                  ``DeletionRecorded`` id      in the trace of the run that saved it
  ==============  ==========================  ==========================================

  Every span but the run's has the run span as its parent.
- **Step grouping**: the step stream's versions (1, 2, ... in commit order, whatever the step
  numbers) are cut into groups in levels of ``GROUPS_PER_LEVEL`` (100) groups, each level's
  groups ``LEVEL_GROWTH`` (10) times longer than the last's: 100 groups of 100 versions (the
  first 10,000 steps), then 100 of 1,000, 100 of 10,000, ... Deterministic from the stored
  events, final as soon as a group's last version is stored, and bounded: a run has at most
  100 step spans per tenfold of its length (a million steps: 289, a billion: 589), so any
  run's trace opens in a trace UI.
- **LineageIR ids**: the published shape wants UUIDs, so a span appears there as
  ``lineage_span_id``: a version-8 UUID whose last 16 hex digits are the 8-byte span id and
  whose first 8 bytes are the run id's (version nibble set), unique across runs in the read
  model. ``otlp_span_id`` reads the span id back.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from uuid import UUID

STEPS_PER_SPAN = 100  # the first level's group size
GROUPS_PER_LEVEL, LEVEL_GROWTH = 100, 10

RUN, STEPS, CHECKPOINT, EVALUATION, FAILURE, RECOVERY = (
    "run", "steps", "checkpoint", "evaluation", "failure", "recovery")
BEST, RETENTION, FINISH = "best", "retention", "finish"


def trace_id(run_id: UUID) -> bytes:
    """The trace id of a run: the run id's 16 bytes."""
    return run_id.bytes


def run_span_id(run_id: UUID) -> bytes:
    return _span_id(RUN, run_id.bytes)


def finish_span_id(run_id: UUID) -> bytes:
    return _span_id(FINISH, run_id.bytes)


def _level_start(level: int) -> int:
    """How many versions the levels before ``level`` hold."""
    return GROUPS_PER_LEVEL * STEPS_PER_SPAN * (LEVEL_GROWTH ** level - 1) // (LEVEL_GROWTH - 1)


def step_group(version: int) -> int:
    """The group of step-stream version ``version`` (versions start at 1)."""
    level = 0
    while version > _level_start(level + 1):
        level += 1
    size = STEPS_PER_SPAN * LEVEL_GROWTH ** level
    return level * GROUPS_PER_LEVEL + (version - 1 - _level_start(level)) // size


def step_group_versions(group: int) -> tuple[int, int]:
    """The first and last step-stream versions of ``group``."""
    level, within = divmod(group, GROUPS_PER_LEVEL)
    size = STEPS_PER_SPAN * LEVEL_GROWTH ** level
    first = _level_start(level) + within * size + 1
    return first, first + size - 1


def step_group_span_id(run_id: UUID, group: int) -> bytes:
    return _span_id(STEPS, run_id.bytes + group.to_bytes(8, "big"))


@dataclass(frozen=True)
class StepGrouping:
    """How a run's step stream is cut into ``train steps`` spans: ``fixed`` 0 is the trace
    identity's grouping above (the read model's, the export's default); ``fixed`` n > 0, an
    export option (``LINEAGE_OTLP_STEPS_PER_SPAN``), puts n versions in a span (1: a span per
    step), with span ids of their own (the read model keeps the default grouping)."""

    fixed: int = 0

    def group(self, version: int) -> int:
        return step_group(version) if not self.fixed else (version - 1) // self.fixed

    def versions(self, group: int) -> tuple[int, int]:
        if not self.fixed:
            return step_group_versions(group)
        return group * self.fixed + 1, (group + 1) * self.fixed

    def span_id(self, run_id: UUID, group: int) -> bytes:
        if not self.fixed:
            return step_group_span_id(run_id, group)
        return _span_id(STEPS, run_id.bytes + group.to_bytes(8, "big")
                        + self.fixed.to_bytes(8, "big"))

    def ends(self, first: int, last: int) -> list[int]:
        """The versions among ``first..last`` that end a group, in order."""
        if self.fixed:
            return list(range((first + self.fixed - 1) // self.fixed * self.fixed, last + 1,
                              self.fixed))
        found, group = [], self.group(first)
        while (end := self.versions(group)[1]) <= last:
            found.append(end)
            group += 1
        return found

    def ends_group(self, version: int) -> bool:
        return self.versions(self.group(version))[1] == version


DEFAULT_GROUPING = StepGrouping()


def event_span_id(kind: str, event_id: UUID) -> bytes:
    """The span of one event: ``checkpoint``, ``evaluation``, ``failure``, or ``recovery`` for
    an exhaustion recorded with no attempt open."""
    return _span_id(kind, event_id.bytes)


def recovery_span_id(run_id: UUID, attempt: int) -> bytes:
    return _span_id(RECOVERY, run_id.bytes + attempt.to_bytes(8, "big", signed=True))


def lineage_span_id(run_id: UUID, span_id: bytes) -> str:
    """The UUID text of a span in LineageIR: the run id's first 8 bytes (as a version-8 UUID)
    then the 8-byte span id (whose top bits are the RFC 9562 variant)."""
    prefix = bytearray(run_id.bytes[:8])
    prefix[6] = prefix[6] & 0x0F | 0x80
    return str(UUID(bytes=bytes(prefix) + span_id))


def otlp_span_id(lineage_id: str) -> bytes:
    """The 8-byte span id in a LineageIR span id (``lineage_span_id``)."""
    return UUID(lineage_id).bytes[8:]


def _span_id(kind: str, key: bytes) -> bytes:
    digest = bytearray(blake2b(key, digest_size=8, person=kind.encode()).digest())
    digest[0] = digest[0] & 0x3F | 0x80  # never zero; the variant bits of lineage_span_id
    return bytes(digest)
