"""The read-model tables (SQLAlchemy Core; the same SQL on SQLite and PostgreSQL).

Ids are UUID strings (36 characters), times are UTC ISO 8601 strings with microseconds (they sort
as text and read the same in ``sqlite3`` and ``psql``), JSON columns hold compact JSON text.
``position`` columns are notification ids of the event that wrote the row.

These tables are a public interface for auditors (README "Read models in SQL"): rename nothing
without a migration.
"""

from __future__ import annotations

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
SCHEMA_VERSION = 11

ID = String(36)
TIME = String(32)

traces = Table(
    "lineage_traces", metadata,
    Column("id", ID, primary_key=True),  # = the run id
    Column("root_trace_id", ID, nullable=False),
    Column("parent_trace_id", ID),  # the run this one resumed from
    Column("name", Text, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("status", String(16), nullable=False),  # running|completed|failed|cancelled|superseded
    Column("job_status", String(16), nullable=False),  # lineage.application.job_status: + pending|corrupted
    Column("status_reason", Text),  # why the job status is what it is
    Column("finished_reason", Text),
    Column("last_failure", Text),
    Column("recovery", Text, nullable=False),  # JSON: recovering, attempts, exhausted, last_error;
    # while recovering, also holder and lease_until (lineage.application.recovery_lease)
    Column("lost_steps", Text),  # JSON: steps logged after the checkpoint a recovery used
    Column("best_checkpoint_id", ID),
    Column("best", Text),  # JSON: metric, mode, value, eval_step, checkpoint_step
    Column("last_heartbeat_at", TIME),
    Column("last_activity_at", TIME),  # the latest recorded time of any of its events
    Column("failure_retryable", Boolean, nullable=False),  # the last failure says retry may help
    Column("resumed_checkpoint_id", ID),  # the checkpoint it resumed from
    Column("started_at", TIME, nullable=False),
    Column("finished_at", TIME),
    Column("start_step", BigInteger, nullable=False),
    Column("steps", BigInteger, nullable=False),  # step events logged
    Column("last_step", BigInteger),
    Column("last_metrics", Text, nullable=False),
    Column("checkpoints", Integer, nullable=False),
    Column("evaluations", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("corrupted", Boolean, nullable=False),
    Column("superseded_by", ID),
    Column("job", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
)
Index("lineage_traces_status", traces.c.job_status)
Index("lineage_traces_started", traces.c.started_at)

spans = Table(
    "lineage_spans", metadata,
    Column("id", ID, primary_key=True),
    Column("trace_id", ID, nullable=False),
    Column("parent_span_id", ID),
    Column("kind", String(16), nullable=False),  # run|steps|checkpoint|evaluation|failure|recovery
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),  # ok|error|running
    Column("started_at", TIME, nullable=False),
    Column("finished_at", TIME),
    Column("step_from", BigInteger),
    Column("step_to", BigInteger),
    Column("attributes", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("error_type", Text),
    Column("error_message", Text),
    Column("position", BigInteger, nullable=False),
)
Index("lineage_spans_trace", spans.c.trace_id, spans.c.started_at)

artifacts = Table(
    "lineage_artifacts", metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("type", String(16), nullable=False),
    Column("uri", Text, nullable=False),
    Column("name", Text),
    Column("size", BigInteger),
    Column("checksum_algorithm", String(16)),
    Column("checksum", String(128)),
    Column("format", String(64)),
    Column("run_id", ID),
    Column("step", BigInteger),
    Column("includes_optimizer", Boolean),
    Column("status", String(16), nullable=False),  # live|retired|expired
    Column("status_reason", Text),
    Column("verified", Boolean),
    Column("pins", Text, nullable=False),  # JSON: why retention must keep it (key -> reason)
    Column("deletion", Text),  # outcome of deleting its bytes after retirement
    Column("metadata", Text, nullable=False),
    Column("registered_at", TIME, nullable=False),
    Column("actor", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
)
Index("lineage_artifacts_type", artifacts.c.type, artifacts.c.registered_at)
Index("lineage_artifacts_run", artifacts.c.run_id)
Index("lineage_artifacts_checksum", artifacts.c.checksum)
Index("lineage_artifacts_position", artifacts.c.position)

artifact_history = Table(  # every change of an artifact, for the registry as of a past position
    "lineage_artifact_history", metadata,
    Column("position", BigInteger, primary_key=True),
    Column("artifact_id", ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("at", TIME, nullable=False),
    Column("state", Text, nullable=False),  # JSON: status, status_reason, verified, pins, deletion
)
Index("lineage_artifact_history_artifact", artifact_history.c.artifact_id, artifact_history.c.position)

aliases = Table(  # one row per alias (a name in a scope); artifact_id is where it points now
    "lineage_aliases", metadata,
    Column("alias_id", ID, primary_key=True),
    Column("scope", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("artifact_id", ID),
    Column("protected", Boolean, nullable=False),
    Column("moved_at", TIME),
    Column("position", BigInteger, nullable=False),
)
Index("lineage_aliases_name", aliases.c.scope, aliases.c.name, unique=True)
Index("lineage_aliases_artifact", aliases.c.artifact_id)

alias_history = Table(
    "lineage_alias_history", metadata,
    Column("position", BigInteger, primary_key=True),
    Column("alias_id", ID, nullable=False),
    Column("scope", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("artifact_id", ID, nullable=False),
    Column("previous_artifact_id", ID),
    Column("protected", Boolean, nullable=False),
    Column("moved_at", TIME, nullable=False),
    Column("actor", Text, nullable=False),
)
Index("lineage_alias_history_name", alias_history.c.scope, alias_history.c.name, alias_history.c.position)

# Provenance edges, LineageIR style (source -> target with a relationship), plus the direction
# of flow (upstream -> downstream) so one recursive query walks every relationship.
edges = Table(
    "lineage_edges", metadata,
    Column("id", ID, primary_key=True),
    Column("trace_id", ID),
    Column("source_type", String(16), nullable=False),  # trace|span|artifact
    Column("source_id", ID, nullable=False),
    Column("target_type", String(16), nullable=False),
    Column("target_id", ID, nullable=False),
    Column("relationship", String(16), nullable=False),  # derived_from|produces|consumes|...
    Column("upstream_id", ID, nullable=False),
    Column("upstream_type", String(16), nullable=False),
    Column("downstream_id", ID, nullable=False),
    Column("downstream_type", String(16), nullable=False),
    Column("metadata", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
)
Index("lineage_edges_down", edges.c.downstream_id, edges.c.upstream_id)
Index("lineage_edges_up", edges.c.upstream_id, edges.c.downstream_id)
Index("lineage_edges_trace", edges.c.trace_id)

audit = Table(
    "lineage_audit", metadata,
    Column("position", BigInteger, primary_key=True),
    Column("event_id", ID, nullable=False),
    Column("occurred_at", TIME, nullable=False),
    Column("recorded_at", TIME, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("kind", String(64), nullable=False),  # e.g. run.checkpoint_saved
    Column("subject_type", String(16), nullable=False),  # run|artifact|alias
    Column("subject_id", ID, nullable=False),
    Column("run_id", ID),
    Column("summary", Text, nullable=False),
)
Index("lineage_audit_subject", audit.c.subject_id, audit.c.position)
# Only rows whose subject is not the run itself (an artifact a run produced): a step's row is
# found by its subject, and a partial index is one B-tree fewer per step.
Index("lineage_audit_run", audit.c.run_id, audit.c.position,
      sqlite_where=audit.c.subject_type != "run", postgresql_where=audit.c.subject_type != "run")
Index("lineage_audit_recorded", audit.c.recorded_at)

# A run's steps, one row per stored step block (``lineage.codec.step_block``): ``data`` is the
# block as stored (every step's metrics, times, ids), the other columns say which steps it holds
# without decoding it. Queries decode ``data`` (``StepMetricsView``); plain SQL sees the ranges.
step_metrics = Table(
    "lineage_step_metrics", metadata,
    Column("run_id", ID, primary_key=True),
    Column("seq_from", BigInteger, primary_key=True),  # stream versions (steps may repeat)
    Column("seq_to", BigInteger, nullable=False),
    Column("step_min", BigInteger, nullable=False),  # the lowest and highest step numbers
    Column("step_max", BigInteger, nullable=False),
    Column("occurred_from", TIME, nullable=False),
    Column("occurred_to", TIME, nullable=False),
    Column("summary", Text, nullable=False),  # JSON: name -> [count, min, max, last]
    Column("data", LargeBinary, nullable=False),
    Column("position", BigInteger, nullable=False),
)
Index("lineage_step_metrics_position", step_metrics.c.position)

# Events a read model could not apply (``lineage.projections.quarantine``): skipped by that read
# model, kept here with the reason, cleared and re-derived by a rebuild. ``quarantined_at`` is
# the only column a rebuild does not reproduce.
quarantine = Table(
    "lineage_quarantine", metadata,
    Column("read_model", String(64), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_id", ID),  # None when the event did not decode
    Column("topic", Text, nullable=False),
    Column("originator_id", Text, nullable=False),
    Column("originator_version", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),  # exception class: message
    Column("quarantined_at", TIME, nullable=False),
)
