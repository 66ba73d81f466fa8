"""The read-model tables (SQLAlchemy Core; the same SQL on SQLite and PostgreSQL).

Ids are UUID strings (36 characters), times are UTC ISO 8601 strings with microseconds (they sort
as text and read the same in ``sqlite3`` and ``psql``), JSON columns hold compact JSON text.
``position`` columns are notification ids of the event that wrote the row.

These tables are a public interface for auditors (README "Read models in SQL"): rename nothing
without a migration.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Bump when a table changes shape or meaning: the runner then drops and rebuilds every read
# model from the events (they are derived data), instead of failing on an old table.
# 6: span ids are the trace identity's (lineage.spans.identity), shared with the OTLP export.
# 8: lineage_quarantine (events a read model could not apply).
# 9: steps stored in blocks: lineage_step_metrics holds one row per block; no audit row per step.
# 10: step spans grouped in levels past 10,000 steps; finish run, best and retention spans; a
#     superseded run's span is an error, as in the OTLP export.
# 11: a seal's audit row says what it seals (tree size, root, key).
# 12: alias history indexed by the artifact an alias came to and the one it left (a web
#     artifact page reads both).
SCHEMA_VERSION = 12

ID = String(36)
TIME = String(32)


def _required(name: str, type_: Any, **options: Any) -> Column[Any]:
    return Column(name, type_, nullable=False, **options)


def _table(name: str, *items: Column[Any] | Index,
           position: Literal["last", "key", "given"] = "last") -> Table:
    """A read-model table: its columns, then its indexes, and a ``position`` column (the
    notification id of the event that wrote the row): ``last`` (most tables), ``key`` (first,
    the primary key: a history, one row per event) or ``given`` (among the columns)."""
    key = (Column("position", BigInteger, primary_key=True),) if position == "key" else ()
    last = (_required("position", BigInteger),) if position == "last" else ()
    columns = [item for item in items if isinstance(item, Column)]
    indexes = [item for item in items if isinstance(item, Index)]
    return Table(name, metadata, *key, *columns, *last, *indexes)


traces = _table("lineage_traces",
    Column("id", ID, primary_key=True),  # = the run id
    _required("root_trace_id", ID),
    Column("parent_trace_id", ID),  # the run this one resumed from
    _required("name", Text),
    _required("tenant_id", Text),
    _required("status", String(16)),  # running|completed|failed|cancelled|superseded
    _required("job_status", String(16)),  # lineage.application.job_status: + pending|corrupted
    Column("status_reason", Text),  # why the job status is what it is
    Column("finished_reason", Text),
    Column("last_failure", Text),
    _required("recovery", Text),  # JSON: recovering, attempts, exhausted, last_error;
    # while recovering, also holder and lease_until (lineage.application.recovery_lease)
    Column("lost_steps", Text),  # JSON: steps logged after the checkpoint a recovery used
    Column("best_checkpoint_id", ID),
    Column("best", Text),  # JSON: metric, mode, value, eval_step, checkpoint_step
    Column("last_heartbeat_at", TIME),
    Column("last_activity_at", TIME),  # the latest recorded time of any of its events
    _required("failure_retryable", Boolean),  # the last failure says retry may help
    Column("resumed_checkpoint_id", ID),  # the checkpoint it resumed from
    _required("started_at", TIME),
    Column("finished_at", TIME),
    _required("start_step", BigInteger),
    _required("steps", BigInteger),  # step events logged
    Column("last_step", BigInteger),
    _required("last_metrics", Text),
    _required("checkpoints", Integer),
    _required("evaluations", Integer),
    _required("failures", Integer),
    _required("corrupted", Boolean),
    Column("superseded_by", ID),
    _required("job", Text),
    _required("tags", Text),
    Index("lineage_traces_status", "job_status"),
    Index("lineage_traces_started", "started_at"),
)

spans = _table("lineage_spans",
    Column("id", ID, primary_key=True),
    _required("trace_id", ID),
    Column("parent_span_id", ID),
    _required("kind", String(16)),  # run|steps|checkpoint|evaluation|failure|recovery
    _required("name", Text),
    _required("status", String(16)),  # ok|error|running
    _required("started_at", TIME),
    Column("finished_at", TIME),
    Column("step_from", BigInteger),
    Column("step_to", BigInteger),
    _required("attributes", Text),
    _required("metrics", Text),
    Column("error_type", Text),
    Column("error_message", Text),
    Index("lineage_spans_trace", "trace_id", "started_at"),
)

artifacts = _table("lineage_artifacts",
    Column("id", ID, primary_key=True),
    _required("tenant_id", Text),
    _required("type", String(16)),
    _required("uri", Text),
    Column("name", Text),
    Column("size", BigInteger),
    Column("checksum_algorithm", String(16)),
    Column("checksum", String(128)),
    Column("format", String(64)),
    Column("run_id", ID),
    Column("step", BigInteger),
    Column("includes_optimizer", Boolean),
    _required("status", String(16)),  # live|retired|expired
    Column("status_reason", Text),
    Column("verified", Boolean),
    _required("pins", Text),  # JSON: why retention must keep it (key -> reason)
    Column("deletion", Text),  # outcome of deleting its bytes after retirement
    _required("metadata", Text),
    _required("registered_at", TIME),
    _required("actor", Text),
    Index("lineage_artifacts_type", "type", "registered_at"),
    Index("lineage_artifacts_run", "run_id"),
    Index("lineage_artifacts_checksum", "checksum"),
    Index("lineage_artifacts_position", "position"),
)

# Every change of an artifact, for the registry as of a past position.
artifact_history = _table("lineage_artifact_history",
    _required("artifact_id", ID),
    _required("status", String(16)),
    Column("reason", Text),
    _required("at", TIME),
    _required("state", Text),  # JSON: status, status_reason, verified, pins, deletion
    Index("lineage_artifact_history_artifact", "artifact_id", "position"),
    position="key",
)

# One row per alias (a name in a scope); artifact_id is where it points now.
aliases = _table("lineage_aliases",
    Column("alias_id", ID, primary_key=True),
    _required("scope", Text),
    _required("name", Text),
    Column("artifact_id", ID),
    _required("protected", Boolean),
    Column("moved_at", TIME),
    Index("lineage_aliases_name", "scope", "name", unique=True),
    Index("lineage_aliases_artifact", "artifact_id"),
)

alias_history = _table("lineage_alias_history",
    _required("alias_id", ID),
    _required("scope", Text),
    _required("name", Text),
    _required("artifact_id", ID),
    Column("previous_artifact_id", ID),
    _required("protected", Boolean),
    _required("moved_at", TIME),
    _required("actor", Text),
    Index("lineage_alias_history_name", "scope", "name", "position"),
    Index("lineage_alias_history_to", "artifact_id", "position"),
    Index("lineage_alias_history_from", "previous_artifact_id", "position"),
    position="key",
)

# Provenance edges, LineageIR style (source -> target with a relationship), plus the direction
# of flow (upstream -> downstream) so one recursive query walks every relationship.
edges = _table("lineage_edges",
    Column("id", ID, primary_key=True),
    Column("trace_id", ID),
    _required("source_type", String(16)),  # trace|span|artifact
    _required("source_id", ID),
    _required("target_type", String(16)),
    _required("target_id", ID),
    _required("relationship", String(16)),  # derived_from|produces|consumes|...
    _required("upstream_id", ID),
    _required("upstream_type", String(16)),
    _required("downstream_id", ID),
    _required("downstream_type", String(16)),
    _required("metadata", Text),
    Index("lineage_edges_down", "downstream_id", "upstream_id"),
    Index("lineage_edges_up", "upstream_id", "downstream_id"),
    Index("lineage_edges_trace", "trace_id"),
)

audit = _table("lineage_audit",
    _required("event_id", ID),
    _required("occurred_at", TIME),
    _required("recorded_at", TIME),
    _required("tenant_id", Text),
    _required("actor", Text),
    _required("source", Text),
    _required("kind", String(64)),  # e.g. run.checkpoint_saved
    _required("subject_type", String(16)),  # run|artifact|alias
    _required("subject_id", ID),
    Column("run_id", ID),
    _required("summary", Text),
    Index("lineage_audit_subject", "subject_id", "position"),
    Index("lineage_audit_recorded", "recorded_at"),
    position="key",
)
# Only rows whose subject is not the run itself (an artifact a run produced): a step's row is
# found by its subject, and a partial index is one B-tree fewer per step.
Index("lineage_audit_run", audit.c.run_id, audit.c.position,
      sqlite_where=audit.c.subject_type != "run", postgresql_where=audit.c.subject_type != "run")

# A run's steps, one row per stored step block (``lineage.codec.step_block``): ``data`` is the
# block as stored (every step's metrics, times, ids), the other columns say which steps it holds
# without decoding it. Queries decode ``data`` (``StepMetricsView``); plain SQL sees the ranges.
step_metrics = _table("lineage_step_metrics",
    Column("run_id", ID, primary_key=True),
    Column("seq_from", BigInteger, primary_key=True),  # stream versions (steps may repeat)
    _required("seq_to", BigInteger),
    _required("step_min", BigInteger),  # the lowest and highest step numbers
    _required("step_max", BigInteger),
    _required("occurred_from", TIME),
    _required("occurred_to", TIME),
    _required("summary", Text),  # JSON: name -> [count, min, max, last]
    _required("data", LargeBinary),
    Index("lineage_step_metrics_position", "position"),
)

# Events a read model could not apply (``lineage.projections.quarantine``): skipped by that read
# model, kept here with the reason, cleared and re-derived by a rebuild. ``quarantined_at`` is
# the only column a rebuild does not reproduce.
quarantine = _table("lineage_quarantine",
    Column("read_model", String(64), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_id", ID),  # None when the event did not decode
    _required("topic", Text),
    _required("originator_id", Text),
    _required("originator_version", BigInteger),
    _required("reason", Text),  # exception class: message
    _required("quarantined_at", TIME),
    position="given",
)
