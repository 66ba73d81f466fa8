"""Queries over the read models: plain methods returning plain dicts (JSON-ready).

Embedded use stays simple: every query first catches the projections up to the head of the
log (``ReadModels(catch_up=True)``), so a query right after a write sees it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, false, func, or_, select

from lineage.application import validation
from lineage.errors import ArtifactNotFoundError, RunNotFoundError, ValidationError
from lineage.projections.audit_steps import StepFilter, merged, step_blocks
from lineage.projections.decoding import loads
from lineage.projections.lineage_walk import walk
from lineage.projections.lineageir import lineage_graph, nested, open_graph
from lineage.projections.metric_buckets import metric_buckets
from lineage.projections.run_queries import digest_with_prefix, ids_with_prefix, run_rows, runs_query
from lineage.projections.runner import ProjectionRunner
from lineage.projections.step_queries import MetricHistory, metric_history
from lineage.projections.tables import (
    alias_history,
    aliases,
    artifact_history,
    artifacts,
    audit,
    edges,
    traces,
)
from lineage.timestamps import iso, normalise

MAX_DEPTH = 10_000
MAX_PAGE = 10_000


class ReadModels:
    """The queries. ``runner`` is the ProjectionRunner feeding the tables, or a function that
    makes it: then nothing touches the database (tables, upgrades) until the first query."""

    def __init__(self, runner: ProjectionRunner | Callable[[], ProjectionRunner], engine: Engine,
                 *, catch_up: bool = True) -> None:
        self._runner = runner
        self._runner_lock = threading.Lock()
        self.engine = engine
        self.auto_catch_up = catch_up

    @property
    def runner(self) -> ProjectionRunner:
        with self._runner_lock:
            if not isinstance(self._runner, ProjectionRunner):
                self._runner = self._runner()
            return self._runner

    def catches_up(self) -> bool:
        """Whether a query first catches the read models up (so ``runner`` may write)."""
        return self.auto_catch_up

    def close(self) -> None:
        """Release the database connections (the tracker calls this when it closes)."""
        self.engine.dispose()

    def connect(self) -> Connection:
        """A connection to the read models, caught up first as every query is: for queries
        kept beside these (the web pages', ``web_queries``)."""
        return self._conn()

    def _conn(self) -> Connection:
        if self.auto_catch_up:
            self.runner.catch_up()
        return self.engine.connect()

    # -- traces ----------------------------------------------------------------------------------

    def trace(self, run_id: str, *, shape: str = "lineageir") -> dict[str, Any]:
        """A run's LineageIR graph (``shape="lineageir"``) or the seed's nested form."""
        _check_shape(shape)
        with self._conn() as conn:
            graph = lineage_graph(conn, run_id)
        return graph if shape == "lineageir" else nested(graph)

    @contextmanager
    def trace_stream(self, run_id: str, *, shape: str = "lineageir") -> Iterator[dict[str, Any]]:
        """``trace`` for output written as it is made: in the LineageIR shape, ``spans`` is a
        one-pass iterator reading the rows as it is consumed, inside the block (memory bounded
        by a page of spans, not by the run's length; ``lineageir.open_graph``). The nested
        shape is built whole."""
        _check_shape(shape)
        with self._conn() as conn:
            graph = open_graph(conn, run_id)
            yield graph if shape == "lineageir" else nested(graph)

    def runs(self, *, status: str | None = None, job_status: str | None = None,
             watched: bool = False, limit: int = 100, offset: int = 0,
             tenant: str | None = None) -> list[dict[str, Any]]:
        """Runs oldest first, with their checkpoints and inputs (``run_queries.run_rows``);
        ``tenant``: only that tenant's (the server's reads)."""
        with self._conn() as conn:
            query = runs_query(status, job_status, watched, tenant)
            rows = conn.execute(_page(query, limit, offset)).all()
            return run_rows(conn, rows)

    def run_count(self, *, status: str | None = None, job_status: str | None = None,
                  tenant: str | None = None) -> int:
        with self._conn() as conn:
            query = runs_query(status, job_status, tenant=tenant).order_by(None).subquery()
            return int(conn.execute(select(func.count()).select_from(query)).scalar_one())

    def run(self, run_id: str) -> dict[str, Any]:
        with self._conn() as conn:
            row = conn.execute(select(traces).where(traces.c.id == run_id)).one_or_none()
            if row is None:
                raise RunNotFoundError(run_id)
            return run_rows(conn, [row])[0]

    def ids_with_prefix(self, prefix: str, *, kind: str = "any", limit: int = 4,
                        tenant: str | None = None) -> list[str]:
        """Ids of runs and/or artifacts starting with ``prefix`` (dashed, lowercase)."""
        with self._conn() as conn:
            return ids_with_prefix(conn, prefix, kind, limit, tenant)

    def quarantined(self, read_model: str | None = None, *, after: tuple[str, int] | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Events read models skipped because applying them failed, after a catch-up
        (``ProjectionRunner.quarantined``, a page of them with ``after``/``limit``);
        ValidationError for an unknown ``read_model``."""
        known = [projection.name for projection in self.runner.projections]
        if read_model is not None and read_model not in known:
            raise ValidationError("read_model", f"must be one of {', '.join(known)}", read_model)
        if self.auto_catch_up:
            self.runner.catch_up()
        return self.runner.quarantined([read_model] if read_model else (), after, limit)

    def metric_history(self, run_id: str, name: str) -> MetricHistory:
        """Every point of metric ``name`` in the order logged (``MetricHistory``: compact
        arrays). Decodes every block of the run."""
        with self._conn() as conn:
            return metric_history(conn, run_id, name)

    def metric_buckets(self, run_id: str, name: str, buckets: int) -> list[dict[str, Any]]:
        """Metric ``name`` downsampled for a plot: at most ``buckets`` buckets of consecutive
        points with step_from, step_to, count, min, max, last (``metric_buckets``: the rule,
        and why it reads about ``2*buckets`` blocks whatever the run's length).
        ValidationError unless ``buckets`` is an integer from 1 to ``MAX_BUCKETS``."""
        count = validation.buckets(buckets)
        with self._conn() as conn:
            return metric_buckets(conn, run_id, name, count)

    # -- the registry ---------------------------------------------------------------------------

    def artifacts(self, *, type: str | None = None, run: str | None = None,
                  alias: str | None = None, checksum: str | None = None,
                  since: Any = None, until: Any = None, as_of: Any = None,
                  status: str | None = None, limit: int = 100, offset: int = 0,
                  tenant: str | None = None) -> list[dict[str, Any]]:
        """Registered artifacts, oldest first, filtered; ``as_of`` (a time or a position) gives
        the registry as it was then: only what was registered by then, with the status and
        aliases it had then. ``checksum`` is a digest or a unique prefix of one (at least 6 hex
        digits): see ``digest_with_prefix``."""
        with self._conn() as conn:
            position = self._position(conn, as_of)
            query, status_then = _registry_query(position)
            filters = [] if status is None else [status_then == status]
            if tenant is not None:
                filters.append(artifacts.c.tenant_id == tenant)
            if type is not None:
                filters.append(artifacts.c.type == type)
            if run is not None:
                filters.append(artifacts.c.run_id == run)
            if checksum is not None:
                filters += _checksum_filters(conn, checksum)
            if since is not None:
                filters.append(artifacts.c.registered_at >= iso(normalise(since, "since")[0]))
            if until is not None:
                filters.append(artifacts.c.registered_at <= iso(normalise(until, "until")[0]))
            if alias is not None:
                held = self._alias_holders(position, alias)
                filters.append(artifacts.c.id.in_(held))
            query = query.where(and_(*filters)) if filters else query
            rows = conn.execute(_page(query.order_by(artifacts.c.position), limit, offset)).all()
            ids = [r.id for r in rows]
            holders = self._aliases_of(conn, ids, position)
            parents = _parents_of(conn, ids)
            same = _same_content_of(conn, rows, position)
            return [{**_artifact_row(r, holders.get(r.id, [])), "parents": parents.get(r.id, []),
                     "same_content": same.get(r.id, [])} for r in rows]

    def artifact(self, artifact_id: str) -> dict[str, Any]:
        with self._conn() as conn:
            query, _ = _registry_query(None)
            row = conn.execute(query.where(artifacts.c.id == artifact_id)).one_or_none()
            if row is None:
                raise ArtifactNotFoundError(artifact_id)
            found = _artifact_row(row, self._aliases_of(conn, [artifact_id], None).get(artifact_id, []))
            found["parents"] = _parents_of(conn, [artifact_id]).get(artifact_id, [])
            found["same_content"] = _same_content_of(conn, [row], None).get(artifact_id, [])
            found["history"] = [dict(r._mapping) for r in conn.execute(
                select(artifact_history).where(artifact_history.c.artifact_id == artifact_id)
                .order_by(artifact_history.c.position))]
            return found

    def alias_history(self, name: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        query = select(alias_history).where(alias_history.c.name == name)
        if scope is not None:
            query = query.where(alias_history.c.scope == scope)
        with self._conn() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(alias_history.c.position))]

    def _position(self, conn: Connection, as_of: Any) -> int | None:
        if as_of is None:
            return None
        if isinstance(as_of, int) and not isinstance(as_of, bool):
            return as_of
        moment = iso(normalise(as_of, "as_of")[0])
        found = conn.execute(select(func.max(audit.c.position))
                             .where(audit.c.recorded_at <= moment)).scalar()
        return int(found or 0)

    def _alias_holders(self, position: int | None, alias: str) -> Select[Any]:
        if position is None:
            return select(aliases.c.artifact_id).where(aliases.c.name == alias)
        latest = (select(func.max(alias_history.c.position))
                  .where(alias_history.c.position <= position)
                  .group_by(alias_history.c.alias_id))
        return select(alias_history.c.artifact_id).where(
            alias_history.c.name == alias, alias_history.c.position.in_(latest))

    def _aliases_of(self, conn: Connection, ids: list[str], position: int | None) -> dict[str, list[str]]:
        if not ids:
            return {}
        if position is None:
            rows = conn.execute(select(aliases.c.artifact_id, aliases.c.scope, aliases.c.name)
                                .where(aliases.c.artifact_id.in_(ids)))
        else:
            latest = (select(func.max(alias_history.c.position))
                      .where(alias_history.c.position <= position).group_by(alias_history.c.alias_id))
            rows = conn.execute(select(alias_history.c.artifact_id, alias_history.c.scope,
                                       alias_history.c.name)
                                .where(alias_history.c.position.in_(latest),
                                       alias_history.c.artifact_id.in_(ids)))
        found: dict[str, list[str]] = {}
        for row in rows:
            label = row.name if row.scope == "registry" else f"{row.name}@{row.scope[:8]}"
            found.setdefault(row.artifact_id, []).append(label)
        return found

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, *, subject: str | None = None, actor: str | None = None,
              kind: str | None = None, since: Any = None, until: Any = None,
              include_steps: bool = False, after: int = 0, limit: int = 100,
              tenant: str | None = None) -> list[dict[str, Any]]:
        """Who did what and when, in log order. ``subject`` matches a run (its own events and
        its artifacts') or an artifact; page with ``after`` = the last position you saw.
        ``include_steps`` adds the step events (from the step metrics rows,
        ``audit_steps``) and heartbeats. Steps of one stored block share its position, and a
        page never cuts a block: it may hold more than ``limit`` rows (up to one block more),
        so paging by the last position never skips or repeats a step."""
        limit = _limit(limit)
        since = None if since is None else iso(normalise(since, "since")[0])
        until = None if until is None else iso(normalise(until, "until")[0])
        query = select(audit).where(audit.c.position > after).order_by(audit.c.position)
        if subject is not None:
            query = query.where(or_(audit.c.subject_id == subject,
                                    and_(audit.c.run_id == subject, audit.c.subject_type != "run")))
        if actor is not None:
            query = query.where(audit.c.actor == actor)
        if tenant is not None:
            query = query.where(audit.c.tenant_id == tenant)
        if kind is not None:
            query = query.where(audit.c.kind.like(f"%{kind}%"))
        if not include_steps:  # heartbeats: high-volume and operational, like steps
            query = query.where(audit.c.kind != "run.heartbeat")
        if since is not None:
            query = query.where(audit.c.recorded_at >= since)
        if until is not None:
            query = query.where(audit.c.recorded_at <= until)
        with self._conn() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.limit(limit))]
            if not include_steps:
                return rows
            steps = StepFilter(after, subject, actor, kind, since, until)
            return merged(rows, step_blocks(conn, steps), limit)

    # -- lineage --------------------------------------------------------------------------------

    def lineage(self, node_id: str, *, direction: str = "up", depth: int = 20) -> dict[str, Any]:
        """Ancestors (``up``), descendants (``down``) or both of an artifact or run, to
        ``depth`` edges, each walk ONE recursive SQL query. A cycle cannot loop: the walk stops
        at ``depth`` and nodes are reported once, at their shortest distance."""
        if direction not in ("up", "down", "both"):
            raise ValidationError("direction", f"must be up, down or both, got {direction!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
            raise ValidationError("depth", f"must be an integer from 0 to {MAX_DEPTH}", depth)
        with self._conn() as conn:
            return walk(conn, node_id, direction, depth)


def _parents_of(conn: Connection, ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if ids:
        for row in conn.execute(select(edges.c.target_id, edges.c.source_id)
                                .where(edges.c.relationship == "derived_from",
                                       edges.c.target_id.in_(ids)).order_by(edges.c.position)):
            found.setdefault(row.target_id, []).append(row.source_id)
    return found


def _checksum_filters(conn: Connection, checksum: str) -> list[Any]:
    """The digest (or unique prefix, ``digest_with_prefix``), under the algorithm when one
    is given (``sha256:...``); a bare digest matches it under any algorithm."""
    digest = digest_with_prefix(conn, checksum)  # None: no such digest
    if digest is None:
        return [false()]
    algorithm = checksum.strip().lower().rpartition(":")[0]
    found = [artifacts.c.checksum == digest]
    return [*found, artifacts.c.checksum_algorithm == algorithm] if algorithm else found


def _same_content_of(conn: Connection, rows: Sequence[Any],
                     position: int | None) -> dict[str, list[str]]:
    """For each row, the other artifacts (registered by ``position``) with the same checksum
    algorithm and digest, oldest first: the same bytes under another id. One query."""
    digests = {r.checksum for r in rows if r.checksum}
    if not digests:
        return {}
    query = (select(artifacts.c.id, artifacts.c.checksum_algorithm, artifacts.c.checksum)
             .where(artifacts.c.checksum.in_(digests)).order_by(artifacts.c.position))
    if position is not None:
        query = query.where(artifacts.c.position <= position)
    holders: dict[tuple[str, str], list[str]] = {}
    for held in conn.execute(query):
        holders.setdefault((held.checksum_algorithm, held.checksum), []).append(held.id)
    return {r.id: [other for other in holders.get((r.checksum_algorithm, r.checksum), [])
                   if other != r.id] for r in rows if r.checksum}


def _registry_query(position: int | None) -> tuple[Select[Any], Any]:
    """The registry (as of ``position``: with each artifact's changeable state then) and the
    expression of its status then."""
    if position is None:
        return select(artifacts), artifacts.c.status
    changes, change = artifact_history.alias("changes"), artifact_history.alias("change")
    latest = (select(func.max(changes.c.position))
              .where(changes.c.artifact_id == artifacts.c.id, changes.c.position <= position)
              .correlate(artifacts).scalar_subquery())
    status_then = (select(change.c.status).where(change.c.position == latest)
                   .correlate(artifacts).scalar_subquery())
    state_then = (select(change.c.state).where(change.c.position == latest)
                  .correlate(artifacts).scalar_subquery())
    query = select(artifacts, state_then.label("state_then")).where(artifacts.c.position <= position)
    return query, status_then


def _artifact_row(row: Any, alias_names: list[str]) -> dict[str, Any]:
    """A registry row as a dict; with a ``state_then`` (as-of queries) its changeable fields
    are those it had then."""
    data = dict(row._mapping)
    state_then = data.pop("state_then", None)
    data["metadata"] = loads(data["metadata"])
    data["pins"] = loads(data["pins"])
    if state_then is not None:
        data.update(loads(state_then))
    data["aliases"] = sorted(alias_names)
    return data


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE:
        raise ValidationError("limit", f"must be an integer from 1 to {MAX_PAGE}", limit)
    return limit


def _check_shape(shape: str) -> None:
    if shape not in ("lineageir", "nested"):
        raise ValidationError("format", f"must be lineageir or nested, got {shape!r}")


def _page(query: Select[Any], limit: int, offset: int) -> Select[Any]:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset", "must be a non-negative integer", offset)
    return query.limit(_limit(limit)).offset(offset)

