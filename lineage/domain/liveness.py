"""Heartbeats: proof that the process recording a run is alive while the run is idle.

One append-only stream per run (``ids.heartbeat_stream_id``), like the step log: never replayed
into an object (only its last event is read), and kept out of the Run aggregate's stream, which
is replayed on every load. A run whose last step, run event and heartbeat are all older than a
monitor's threshold, and which has no finish event, belongs to a process that died.
"""

from __future__ import annotations

from uuid import UUID

from lineage.domain.envelope import LogEvent


class HeartbeatRecorded(LogEvent):
    run_id: UUID
    pid: int
    last_step: int | None
