"""Queries behind the web pages (``lineage serve``'s ``/ui``) that the tracker's own queries do
not answer: the runs table with its filters and total, and what a run page draws beside the
metric curves (evaluations, checkpoints with their status now, failures and recoveries, and the
recovery chain the run belongs to). Read-only, over the same read models; every call catches
them up first, as ``ReadModels`` does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, or_, select

from lineage.application import validation
from lineage.codec.step_decode import decode_block
from lineage.errors import ArtifactNotFoundError, RunNotFoundError, ValidationError
from lineage.projections.decoding import loads, numbers
from lineage.projections.metric_buckets import run_buckets
from lineage.projections.run_queries import run_rows, runs_query, trace_row
from lineage.projections.tables import alias_history, artifacts, spans, step_metrics, traces
from lineage.projections.web_graph import laid_out
from lineage.timestamps import iso, normalise

RESOURCE_BLOCKS = 8  # the newest blocks searched for a resource sample (samples are sparse)
MARK_KINDS = ("evaluation", "checkpoint", "failure", "recovery")
CHAIN_FIELDS = ("id", "name", "status", "job_status", "status_reason", "parent_trace_id",
                "resumed_checkpoint_id", "superseded_by", "start_step", "last_step", "steps",
                "started_at", "finished_at", "lost_steps")


class WebQueries:
    """The web pages' queries over ``views`` (a ``ReadModels``). Thread-safe."""

    def __init__(self, views: Any) -> None:
        self.views = views

    def run_table(self, *, tenant: str, status: str | None = None, name: str | None = None,
                  tag: str | None = None, since: Any = None, until: Any = None,
                  limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """The tenant's runs, newest first, filtered: ``status`` (job or recorded status),
        ``name`` (a part of the name), ``tag`` (``key`` or ``key=value``), started in
        [``since``, ``until``]. ``{"total": n, "runs": [row...]}``: the page's rows (the
        trace columns, without checkpoints and inputs) and how many match in all."""
        query = runs_query(status, tenant=tenant)
        if name:
            query = query.where(traces.c.name.contains(name, autoescape=True))
        if tag:
            query = query.where(_tag_condition(tag))
        if since is not None:
            query = query.where(traces.c.started_at >= iso(normalise(since, "since")[0]))
        if until is not None:
            query = query.where(traces.c.started_at <= iso(normalise(until, "until")[0]))
        with self.views.connect() as conn:
            total = conn.execute(select(func.count()).select_from(
                query.order_by(None).subquery())).scalar_one()
            page = query.order_by(None).order_by(traces.c.started_at.desc(), traces.c.id.desc())
            rows = conn.execute(page.limit(limit).offset(offset)).all()
        return {"total": int(total), "runs": [trace_row(row) for row in rows]}

    def run_overview(self, run_id: str, *, tenant: str) -> dict[str, Any]:
        """A run's row, its marks (evaluations, checkpoints, failures, recoveries, in log
        order: ``kind``, ``name``, ``step``, ``metrics``, ``status``; a checkpoint's ``artifact``
        with its status now), its recovery chain (every run sharing its
        root, oldest first) and its latest resource sample (``{"step", "at", "values"}`` or
        None). RunNotFoundError when ``tenant`` has no such run."""
        with self.views.connect() as conn:
            row = _own_run(conn, run_id, tenant)
            run = run_rows(conn, [row])[0]
            marks = _marks(conn, run_id)
            chain = [{field: value for field, value in trace_row(other).items()
                      if field in CHAIN_FIELDS}
                     for other in conn.execute(select(traces)
                                               .where(traces.c.root_trace_id == row.root_trace_id)
                                               .order_by(traces.c.started_at, traces.c.id))]
            resources = _latest_resources(conn, run_id)
        return {"run": run, "marks": marks, "chain": chain, "resources": resources}

    def curves(self, run_id: str, buckets: int, *, tenant: str) -> dict[str, Any]:
        """Every metric of the run's steps downsampled to at most ``buckets`` buckets, by the
        one rule of ``metric_buckets`` (``run_buckets``: one pass for every metric);
        ValidationError for a ``buckets`` outside 1-``MAX_BUCKETS``, RunNotFoundError when
        ``tenant`` has no such run."""
        count = validation.buckets(buckets)
        with self.views.connect() as conn:
            _own_run(conn, run_id, tenant)
            return run_buckets(conn, run_id, count)

    def lineage_layout(self, node_id: str, *, direction: str, depth: int) -> dict[str, Any]:
        """The lineage walk from ``node_id`` (``ReadModels.lineage``) laid out for the page
        (``web_graph.laid_out``)."""
        return laid_out(self.views.lineage(node_id, direction=direction, depth=depth))

    def alias_periods(self, artifact_id: str, *, tenant: str) -> list[dict[str, Any]]:
        """Every time an alias pointed at the artifact, oldest first: the alias (``alias_id``,
        ``scope``, ``name``), when and by whom it came (``pointed_at``, ``position``,
        ``actor``, ``previous_artifact_id``, ``protected``) and when, to where and by whom it
        moved away (``moved_away_at``, ``moved_to``, ``moved_away_by``; None while it still
        points here). ArtifactNotFoundError when ``tenant`` has no such artifact."""
        with self.views.connect() as conn:
            owner = conn.execute(select(artifacts.c.tenant_id)
                                 .where(artifacts.c.id == artifact_id)).scalar_one_or_none()
            if owner is None or owner != tenant:
                raise ArtifactNotFoundError(artifact_id)
            moves = conn.execute(select(alias_history).where(or_(
                alias_history.c.artifact_id == artifact_id,
                alias_history.c.previous_artifact_id == artifact_id))
                .order_by(alias_history.c.position)).all()
        return _periods(moves, artifact_id)


def _periods(moves: Sequence[Any], artifact_id: str) -> list[dict[str, Any]]:
    """The alias moves to or from the artifact, in log order, paired into periods."""
    found: list[dict[str, Any]] = []
    here: dict[str, dict[str, Any]] = {}  # alias id -> its open period
    for move in moves:
        period = here.get(move.alias_id)
        if period is None and move.artifact_id == artifact_id:
            here[move.alias_id] = period = {
                "alias_id": move.alias_id, "scope": move.scope, "name": move.name,
                "pointed_at": move.moved_at, "position": move.position, "actor": move.actor,
                "previous_artifact_id": move.previous_artifact_id,
                "protected": move.protected, "moved_away_at": None, "moved_to": None,
                "moved_away_by": None}
            found.append(period)
        elif period is not None and move.artifact_id != artifact_id:
            period.update(moved_away_at=move.moved_at, moved_to=move.artifact_id,
                          moved_away_by=move.actor)
            del here[move.alias_id]
    return found


def _own_run(conn: Connection, run_id: str, tenant: str) -> Any:
    """Run ``run_id``'s traces row; RunNotFoundError when ``tenant`` has no such run (another
    tenant's run is not found either)."""
    row = conn.execute(select(traces).where(traces.c.id == run_id)).one_or_none()
    if row is None or row.tenant_id != tenant:
        raise RunNotFoundError(run_id)
    return row


def _tag_condition(tag: str) -> Any:
    """Tags are compact JSON objects: ``key`` matches the key, ``key=value`` the pair (the
    value as a string, or as the JSON number or boolean it spells)."""
    key, has_value, value = tag.partition("=")
    if not key:
        raise ValidationError("tag", "must be key or key=value", tag)
    named = json.dumps(key) + ":"
    if not has_value:
        return traces.c.tags.contains(named, autoescape=True)
    spelled = [named + json.dumps(value)]
    if value in ("true", "false", "null") or value.lstrip("-").replace(".", "", 1).isdigit():
        spelled.append(named + value)
    condition = None
    for text in spelled:
        found = traces.c.tags.contains(text + ",", autoescape=True) | \
            traces.c.tags.contains(text + "}", autoescape=True)
        condition = found if condition is None else condition | found
    return condition


def _marks(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    query = (select(spans.c.kind, spans.c.name, spans.c.status, spans.c.step_from,
                    spans.c.step_to, spans.c.started_at, spans.c.attributes, spans.c.metrics,
                    spans.c.error_type, spans.c.error_message)
             .where(spans.c.trace_id == run_id, spans.c.kind.in_(MARK_KINDS))
             .order_by(spans.c.position))
    found = []
    for row in conn.execute(query):
        attributes = loads(row.attributes) or {}
        found.append({"kind": row.kind, "name": row.name, "status": row.status,
                      "step": row.step_from, "step_to": row.step_to, "at": row.started_at,
                      "metrics": numbers(row.metrics), "artifact": attributes.get("artifact_id")
                      or attributes.get("checkpoint_id"),
                      "error": row.error_message, "error_type": row.error_type})
    ids = [mark["artifact"] for mark in found if mark["artifact"]]
    states: dict[str, str] = {}
    if ids:
        for found_id, found_status in conn.execute(select(artifacts.c.id, artifacts.c.status)
                                                   .where(artifacts.c.id.in_(ids))):
            states[found_id] = found_status
    for mark in found:
        mark["artifact_status"] = states.get(mark["artifact"])
    return found


def _latest_resources(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The run's latest resource sample (``log_step(resources=...)``), from its newest blocks
    only: a long run costs no more than a short one."""
    query = (select(step_metrics.c.data).where(step_metrics.c.run_id == run_id)
             .order_by(step_metrics.c.seq_from.desc()).limit(RESOURCE_BLOCKS))
    for (data,) in conn.execute(query):
        block = decode_block(data)
        for i in reversed(range(block.count)):
            values = block.resources(i)
            if values:
                return {"step": block.steps[i], "at": block.occurred_at(i), "values": values}
    return None
