"""The lineage walk behind ``ReadModels.lineage``: ancestors or descendants of an artifact or
run, each direction ONE recursive SQL query over ``lineage_edges`` whatever the depth, with
each node reached described from the columns the query joins in.

A cycle cannot loop: the walk stops at ``depth`` and a node is reported once, at its shortest
distance. Validation of ``direction`` and ``depth`` is the caller's (``ReadModels.lineage``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, text

from lineage.errors import ArtifactNotFoundError
from lineage.projections.decoding import loads
from lineage.projections.tables import artifacts, spans, traces


def walk(conn: Connection, node_id: str, direction: str, depth: int) -> dict[str, Any]:
    """The walk from ``node_id`` (``up``, ``down`` or ``both``) to ``depth`` edges: the root,
    the nodes reached (by depth, then id; negative depths upstream) and the edges walked (in
    log order). ArtifactNotFoundError when ``node_id`` is neither an artifact nor a run."""
    root = _node(conn, node_id)
    nodes: dict[str, dict[str, Any]] = {}
    found_edges: dict[str, Any] = {}
    for way in (("up", "down") if direction == "both" else (direction,)):
        for row in conn.execute(text(_WALK[way][conn.dialect.name == "postgresql"]),
                                {"start": node_id, "depth": depth}):
            signed = row.depth if way == "down" else -row.depth
            if row.e_id is not None:
                found_edges.setdefault(row.e_id, row)
            known = nodes.get(row.node_id)
            if row.node_id != node_id and (known is None or abs(signed) < abs(known["depth"])):
                nodes[row.node_id] = _walked(row, signed)
    ordered = sorted(found_edges.values(), key=lambda r: (r.e_position, r.e_id))
    return {"root": root, "direction": direction, "depth": depth,
            "nodes": sorted([{**root, "depth": 0}, *nodes.values()],
                            key=lambda n: (n["depth"], n["id"])),
            "edges": [{"id": r.e_id, "source_type": r.source_type, "source_id": r.source_id,
                       "target_type": r.target_type, "target_id": r.target_id,
                       "relationship": r.relationship, "upstream_id": r.upstream_id,
                       "downstream_id": r.downstream_id, "metadata": loads(r.e_metadata)}
                      for r in ordered]}


def _walked(row: Any, depth: int) -> dict[str, Any]:
    """A node the walk reached, described from the columns the walk joined in."""
    node = {"id": row.node_id, "type": row.node_type, "depth": depth, "found": False}
    if row.a_type is not None:
        node.update(found=True, label=f"{row.a_type} {row.a_uri}", artifact_type=row.a_type,
                    uri=row.a_uri, status=row.a_status, step=row.a_step, run_id=row.a_run)
    elif row.t_name is not None:
        node.update(found=True, label=f"run {row.t_name}", status=row.t_status)
    elif row.s_name is not None:
        node.update(found=True, label=row.s_name, status=row.s_status, trace_id=row.s_trace)
    return node


_STEP = {"up": ("upstream", "downstream"), "down": ("downstream", "upstream")}


def _walk_sql(way: str, postgres: bool) -> str:
    """One recursive walk along ``way``, returning each node reached with the edge that
    reached it and the node's description (one query, whatever the depth)."""
    to, frm = _STEP[way]
    start = "CAST(:start AS VARCHAR(36))" if postgres else ":start"
    return (
        f"WITH RECURSIVE walk(node_id, node_type, depth, edge_id) AS ("
        f" SELECT {start}, CAST('start' AS VARCHAR(16)), 0, CAST(NULL AS VARCHAR(36))"
        f" UNION"
        f" SELECT e.{to}_id, e.{to}_type, w.depth + 1, e.id FROM lineage_edges e"
        f" JOIN walk w ON e.{frm}_id = w.node_id WHERE w.depth < :depth)"
        " SELECT w.node_id, w.node_type, w.depth, e.id AS e_id, e.source_type, e.source_id,"
        " e.target_type, e.target_id, e.relationship, e.upstream_id, e.downstream_id,"
        " e.metadata AS e_metadata, e.position AS e_position,"
        " a.type AS a_type, a.uri AS a_uri, a.status AS a_status, a.step AS a_step,"
        " a.run_id AS a_run, t.name AS t_name, t.job_status AS t_status,"
        " s.name AS s_name, s.trace_id AS s_trace, s.status AS s_status"
        " FROM walk w LEFT JOIN lineage_edges e ON e.id = w.edge_id"
        " LEFT JOIN lineage_artifacts a ON w.node_type = 'artifact' AND a.id = w.node_id"
        " LEFT JOIN lineage_traces t ON w.node_type = 'trace' AND t.id = w.node_id"
        " LEFT JOIN lineage_spans s ON w.node_type = 'span' AND s.id = w.node_id"
    )


_WALK = {way: {pg: _walk_sql(way, pg) for pg in (False, True)} for way in ("up", "down")}


def _node(conn: Connection, node_id: str) -> dict[str, Any]:
    for kind in ("artifact", "trace"):
        described = _describe(conn, {"id": node_id, "type": kind, "depth": 0})
        if described.get("found"):
            return described
    raise ArtifactNotFoundError(node_id)


def _describe(conn: Connection, node: dict[str, Any]) -> dict[str, Any]:
    out = {**node, "found": False}
    if node["type"] == "artifact":
        row = conn.execute(select(artifacts.c.type, artifacts.c.uri, artifacts.c.status,
                                  artifacts.c.step, artifacts.c.run_id)
                           .where(artifacts.c.id == node["id"])).one_or_none()
        if row is not None:
            out.update(found=True, label=f"{row.type} {row.uri}", artifact_type=row.type,
                       uri=row.uri, status=row.status, step=row.step, run_id=row.run_id)
    elif node["type"] == "trace":
        row = conn.execute(select(traces.c.name, traces.c.job_status)
                           .where(traces.c.id == node["id"])).one_or_none()
        if row is not None:
            out.update(found=True, label=f"run {row.name}", status=row.job_status)
    elif node["type"] == "span":
        row = conn.execute(select(spans.c.name, spans.c.trace_id, spans.c.status)
                           .where(spans.c.id == node["id"])).one_or_none()
        if row is not None:
            out.update(found=True, label=row.name, status=row.status, trace_id=row.trace_id)
    return out
