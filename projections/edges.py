"""Provenance edges (LineageIR ``ProvenanceEdge``) with their direction of flow.

``source -> target`` with a ``relationship`` is LineageIR's shape; ``upstream``/``downstream``
say which end the lineage flows from, so ancestry is one walk over every kind of edge:

- ``derived_from``: parent artifact (source, upstream) -> derived artifact (target)
- ``produces``: run (source, upstream) -> artifact it produced (target)
- ``consumes``: run (source) -> artifact it used (target, upstream)
- ``depends_on``: resumed run (source) -> run it resumed (target, upstream)
- ``triggers``: recovery span (source, upstream) -> run it started (target)
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from sqlalchemy import Connection, select

from lineage.codec.dispatch import handles
from lineage.domain import Artifact, Run
from lineage.errors import ValidationError
from lineage.projections.decoding import Dispatching, dumps
from lineage.projections.tables import edges
from lineage.projections.traces import recovery_span_id

RELATIONSHIPS = ("derived_from", "produces", "consumes", "depends_on", "triggers")


def edge_id(source_id: str, target_id: str, relationship: str) -> str:
    return str(uuid5(UUID(source_id), f"{relationship}:{target_id}"))


def add_edge(conn: Connection, position: int, trace_id: str | None, source: tuple[str, str],
             target: tuple[str, str], relationship: str, *, upstream: str,
             metadata: dict[str, Any] | None = None) -> None:
    """Insert the edge unless it exists (the same fact recorded twice is one edge).
    ValidationError for a relationship or ``upstream`` end that LineageIR does not have."""
    if relationship not in RELATIONSHIPS:
        raise ValidationError("relationship", f"must be one of {', '.join(RELATIONSHIPS)}",
                              relationship)
    if upstream not in ("source", "target"):
        raise ValidationError("upstream", "must be 'source' or 'target'", upstream)
    (source_type, source_id), (target_type, target_id) = source, target
    identity = edge_id(source_id, target_id, relationship)
    if conn.execute(select(edges.c.id).where(edges.c.id == identity)).first() is not None:
        return
    up, down = (source, target) if upstream == "source" else (target, source)
    conn.execute(edges.insert().values(
        id=identity, trace_id=trace_id, source_type=source_type, source_id=source_id,
        target_type=target_type, target_id=target_id, relationship=relationship,
        upstream_type=up[0], upstream_id=up[1], downstream_type=down[0], downstream_id=down[1],
        metadata=dumps(metadata or {}), position=position))


class EdgeProjection(Dispatching):
    """The lineage graph: every provenance edge the events imply."""

    name = "edges"
    tables = (edges,)

    @handles(Run.InputUsed)
    def _Run_InputUsed(self, conn: Connection, position: int, e: Run.InputUsed) -> None:
        run_id = str(e.originator_id)
        add_edge(conn, position, run_id, ("trace", run_id), ("artifact", str(e.artifact_id)),
                 "consumes", upstream="target", metadata={"role": e.role, "uri": e.uri})

    @handles(Artifact.Registered)
    def _Artifact_Registered(self, conn: Connection, position: int, e: Artifact.Registered) -> None:
        artifact_id = str(e.originator_id)
        run_id = str(e.run_id) if e.run_id else None
        if run_id is not None:
            add_edge(conn, position, run_id, ("trace", run_id), ("artifact", artifact_id),
                     "produces", upstream="source", metadata={"step": e.step, "type": e.type})
        for parent in e.parents:
            add_edge(conn, position, run_id, ("artifact", str(parent)), ("artifact", artifact_id),
                     "derived_from", upstream="source")

    @handles(Run.ResumedFrom)
    def _Run_ResumedFrom(self, conn: Connection, position: int, e: Run.ResumedFrom) -> None:
        run_id = str(e.originator_id)
        add_edge(conn, position, run_id, ("trace", run_id), ("trace", str(e.previous_run_id)),
                 "depends_on", upstream="target",
                 metadata={"checkpoint_id": str(e.checkpoint_id), "step": e.step,
                           "optimizer_restored": e.optimizer_restored})

    @handles(Run.RecoveryCompleted)
    def _Run_RecoveryCompleted(self, conn: Connection, position: int, e: Run.RecoveryCompleted) -> None:
        run_id = str(e.originator_id)
        add_edge(conn, position, run_id, ("span", recovery_span_id(run_id, e.attempt)),
                 ("trace", str(e.new_run_id)), "triggers", upstream="source",
                 metadata={"attempt": e.attempt, "checkpoint_id": str(e.checkpoint_id)})
