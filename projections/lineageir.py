"""A run's trace as LineageIR, from the read-model tables.

Two shapes (JSON Schemas in ``lineage/projections/schemas/``):

- the published LineageIR ``LineageGraph``: ``{trace, spans, artifacts, edges, metadata}`` with
  ``Trace``, ``Span``, ``Artifact`` and ``ProvenanceEdge`` records (UUID strings, UTC
  microsecond timestamps);
- the seed's nested form: ``{trace_id, parent_id, name, status, ..., spans, artifacts,
  metadata}`` where each span carries its children under ``spans``.

Memory is bounded by the number of spans, not steps: steps are rolled up into ranges; and
``open_graph`` gives the spans as an iterator over the rows, for output written as it is made.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, func, or_, select

from lineage.errors import RunNotFoundError
from lineage.projections.decoding import loads, numbers
from lineage.projections.step_queries import steps_after
from lineage.projections.tables import artifacts, edges, spans, traces

ORIGIN = "lineage"
SPAN_PAGE = 1000  # span rows read at a time by ``open_graph``
_SPAN_FIELDS = ("id", "trace_id", "parent_span_id", "kind", "name", "status", "started_at",
                "finished_at", "step_from", "step_to", "attributes", "metrics", "error_type",
                "error_message")  # the columns ``_span`` unpacks, in its order


def lineage_graph(conn: Connection, run_id: str) -> dict[str, Any]:
    """The run's LineageIR graph, whole. RunNotFoundError for an unknown run."""
    graph = open_graph(conn, run_id)
    graph["spans"] = list(graph["spans"])
    return graph


def open_graph(conn: Connection, run_id: str) -> dict[str, Any]:
    """``lineage_graph`` with ``spans`` a one-pass iterator that reads the span rows a page at a
    time as it is consumed (``conn`` open until then): memory bounded by a page, not by the
    run's length (a 10,000,000-step run has 100,000 step spans). RunNotFoundError for an
    unknown run."""
    trace = conn.execute(select(traces).where(traces.c.id == run_id)).one_or_none()
    if trace is None:
        raise RunNotFoundError(run_id)
    edge_rows = conn.execute(select(edges).where(or_(
        edges.c.trace_id == run_id, edges.c.source_id == run_id, edges.c.target_id == run_id))
        .order_by(edges.c.position, edges.c.id)).all()
    artifact_ids = {r.target_id for r in edge_rows if r.target_type == "artifact"}
    artifact_ids |= {r.source_id for r in edge_rows if r.source_type == "artifact"}
    artifact_rows = conn.execute(select(artifacts).where(or_(
        artifacts.c.run_id == run_id, artifacts.c.id.in_(sorted(artifact_ids))))
        .order_by(artifacts.c.position)).all()
    marked = conn.execute(_spans_of(run_id).where(spans.c.kind.in_(("checkpoint", "recovery")))).all()
    count = conn.execute(select(func.count()).select_from(spans)
                         .where(spans.c.trace_id == run_id)).scalar_one()
    span_of = _checkpoint_spans(marked)
    return {
        "trace": _trace(trace),
        "spans": _stream_spans(conn, run_id),
        "artifacts": [_artifact(row, span_of.get(row.id)) for row in artifact_rows],
        "edges": [_edge(row) for row in edge_rows],
        "metadata": _metadata(conn, trace, marked, count),
    }


def _spans_of(run_id: str) -> Select[Any]:
    return (select(*(spans.c[name] for name in _SPAN_FIELDS)).where(spans.c.trace_id == run_id)
            .order_by(spans.c.started_at, spans.c.position))


def _stream_spans(conn: Connection, run_id: str) -> Iterator[dict[str, Any]]:
    for row in conn.execute(_spans_of(run_id).execution_options(yield_per=SPAN_PAGE)):
        yield _span(row)


def nested(graph: dict[str, Any]) -> dict[str, Any]:
    """The seed's nested shape of a ``lineage_graph`` result."""
    trace = graph["trace"]
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in graph["spans"]:
        node = {"span_id": span["id"], "parent_id": span["parent_span_id"], "name": span["name"],
                "kind": span["kind"], "status": span["status"], "started_at": span["started_at"],
                "finished_at": span["finished_at"], "attributes": span["attributes"],
                "metrics": span["metrics"], "error": _error(span), "spans": []}
        children.setdefault(span["parent_span_id"], []).append(node)
    for siblings in children.values():
        for node in siblings:
            node["spans"] = children.get(node["span_id"], [])
    return {
        "trace_id": trace["id"], "parent_id": trace["parent_trace_id"],
        "root_id": trace["root_trace_id"], "name": trace["attributes"]["name"],
        "status": trace["status"], "started_at": trace["started_at"],
        "finished_at": trace["finished_at"], "spans": children.get(None, []),
        "artifacts": [{"artifact_id": a["id"], "type": a["type"], "uri": a["uri"],
                       "checksum": a["checksum"], "size_bytes": a["size_bytes"],
                       "span_id": a["span_id"], "created_at": a["created_at"],
                       "metadata": a["metadata"]} for a in graph["artifacts"]],
        "metadata": {**graph["metadata"], "edges": graph["edges"]},
    }


def _error(span: dict[str, Any]) -> dict[str, Any] | None:
    if span["error_type"] is None:
        return None
    return {"type": span["error_type"], "message": span["error_message"]}


def _trace(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "root_trace_id": row.root_trace_id, "parent_trace_id": row.parent_trace_id,
        "run_id": row.id, "work_id": None, "origin": ORIGIN, "origin_ref": None,
        "status": row.status, "started_at": row.started_at, "finished_at": row.finished_at,
        "attributes": {"name": row.name, "tenant_id": row.tenant_id, "job_status": row.job_status,
                       "status_reason": row.status_reason, "job": loads(row.job),
                       "tags": loads(row.tags), "start_step": row.start_step,
                       "steps": row.steps, "last_step": row.last_step,
                       "last_metrics": numbers(row.last_metrics), "checkpoints": row.checkpoints,
                       "evaluations": row.evaluations, "failures": row.failures,
                       "corrupted": bool(row.corrupted), "superseded_by": row.superseded_by,
                       "finished_reason": row.finished_reason, "last_failure": row.last_failure,
                       "recovery": loads(row.recovery)},
    }


def _span(row: Sequence[Any]) -> dict[str, Any]:
    # Unpacked, not read by name: SQLAlchemy's by-name access costs ~0.5 µs a field, and a
    # long run's trace has 100,000 spans.
    (span_id, trace_id, parent_span_id, kind, name, status, started_at, finished_at, step_from,
     step_to, attributes_text, metrics_text, error_type, error_message) = row  # _SPAN_FIELDS
    attributes = loads(attributes_text)
    if step_from is not None:
        attributes.update(step_from=step_from, step_to=step_to)
    return {
        "id": span_id, "trace_id": trace_id, "parent_span_id": parent_span_id,
        "run_id": trace_id, "step_id": None, "work_id": None, "name": name,
        "kind": kind, "status": status, "attributes": attributes,
        "metrics": numbers(metrics_text), "error_type": error_type,
        "error_message": error_message, "error_details": None,
        "started_at": started_at, "finished_at": finished_at,
    }


def _artifact(row: Row[Any], span_id: str | None) -> dict[str, Any]:
    checksum = f"{row.checksum_algorithm}:{row.checksum}" if row.checksum else None
    return {
        "id": row.id, "trace_id": row.run_id, "span_id": span_id, "run_id": row.run_id,
        "step_id": None, "type": row.type, "uri": row.uri, "checksum": checksum,
        "size_bytes": row.size, "mime_type": _mime(row.format),
        "metadata": {**loads(row.metadata), "status": row.status, "step": row.step,
                     "format": row.format, "name": row.name,
                     "includes_optimizer": row.includes_optimizer, "pins": loads(row.pins),
                     "deletion": row.deletion},
        "created_at": row.registered_at,
    }


def _edge(row: Row[Any]) -> dict[str, Any]:
    return {"id": row.id, "trace_id": row.trace_id, "source_type": row.source_type,
            "source_id": row.source_id, "target_type": row.target_type,
            "target_id": row.target_id, "relationship": row.relationship,
            "metadata": loads(row.metadata)}


def _checkpoint_spans(span_rows: Sequence[Row[Any]]) -> dict[str, str]:
    found = {}
    for row in span_rows:
        if row.kind == "checkpoint":
            found[loads(row.attributes).get("artifact_id")] = row.id
    return found


def _metadata(conn: Connection, trace: Row[Any], span_rows: Sequence[Row[Any]],
              count: int) -> dict[str, Any]:
    """Derived facts: the steps this run lost to a recovery (logged after the checkpoint the
    recovery resumed from), and the shape of the data (``span_rows``: the run's recovery
    spans, at least; ``count``: how many spans it has)."""
    selected = [loads(r.attributes) for r in span_rows if r.kind == "recovery" and r.status == "ok"]
    lost = loads(trace.lost_steps) if trace.lost_steps else None
    if lost is None and selected and "checkpoint_step" in selected[-1]:
        after = selected[-1]["checkpoint_step"]
        row = steps_after(conn, trace.id, after)
        lost = {"after_checkpoint_step": after, "count": row[0], "from_step": row[1],
                "to_step": row[2], "resumed_as": selected[-1].get("new_run_id")}
    return {"schema": "lineageir/1", "lost_steps": lost, "spans": count,
            "best": {**loads(trace.best), "checkpoint_id": trace.best_checkpoint_id} if trace.best else None,
            "last_heartbeat_at": trace.last_heartbeat_at}


def _mime(fmt: str | None) -> str | None:
    return {"safetensors": "application/vnd.safetensors", "onnx": "application/onnx",
            "gguf": "application/vnd.gguf", "pytorch": "application/vnd.pytorch"}.get(fmt or "")
