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
- **Step grouping**: the step stream's version ``v`` (1, 2, ... in commit order, whatever the
  step numbers) belongs to group ``(v - 1) // STEPS_PER_SPAN``: deterministic from the stored
  events, and a million-step run has ten thousand step spans, not a million.
- **LineageIR ids**: the published shape wants UUIDs, so a span appears there as
  ``lineage_span_id``: a version-8 UUID whose last 16 hex digits are the 8-byte span id and
  whose first 8 bytes are the run id's (version nibble set), unique across runs in the read
  model. ``otlp_span_id`` reads the span id back.
"""

from __future__ import annotations

from hashlib import blake2b
from uuid import UUID

STEPS_PER_SPAN = 100

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


def step_group(version: int) -> int:
    """The group of step-stream version ``version`` (versions start at 1)."""
    return (version - 1) // STEPS_PER_SPAN


def step_group_versions(group: int) -> tuple[int, int]:
    """The first and last step-stream versions of ``group``."""
    return group * STEPS_PER_SPAN + 1, (group + 1) * STEPS_PER_SPAN


def step_group_span_id(run_id: UUID, group: int) -> bytes:
    return _span_id(STEPS, run_id.bytes + group.to_bytes(8, "big"))


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
