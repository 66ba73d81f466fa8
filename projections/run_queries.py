"""Queries for runs and id lookups over the read models (``ReadModels`` delegates here).

A run's row is its ``lineage_traces`` row with what a ``RunView`` needs beside it: the
checkpoints it saved (its ``checkpoint`` spans, in order) and the artifacts it used (its
``consumes`` edges). Both come in one query per page of runs, so listing a thousand runs is a
handful of statements whatever their step counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, select

from lineage.errors import ValidationError
from lineage.projections.decoding import loads, numbers
from lineage.projections.tables import artifacts, edges, spans, traces


def runs_query(status: str | None = None, job_status: str | None = None,
               watched: bool = False, tenant: str | None = None) -> Select[Any]:
    """Runs oldest first; ``status`` matches the job status or the recorded status (what
    ``lineage runs --status`` means), ``job_status`` the job status only; ``watched`` keeps
    the runs a recovery monitor looks at: not superseded, and corrupted, with a retryable
    failure, running, or recovering (its executor may have died)."""
    query = select(traces).order_by(traces.c.started_at, traces.c.id)
    if watched:
        query = query.where(traces.c.superseded_by.is_(None) & (
            traces.c.corrupted | ((traces.c.failures > 0) & traces.c.failure_retryable)
            | (traces.c.job_status == "running")
            | traces.c.recovery.contains('"recovering":true')))  # compact JSON (decoding.dumps)
    if status is not None:
        query = query.where((traces.c.job_status == status) | (traces.c.status == status))
    if job_status is not None:
        query = query.where(traces.c.job_status == job_status)
    if tenant is not None:
        query = query.where(traces.c.tenant_id == tenant)
    return query


def run_rows(conn: Connection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """The rows as dicts (JSON columns decoded) with ``checkpoint_list`` ([artifact id, step]
    in save order) and ``inputs`` (artifact ids in use order)."""
    ids = [row.id for row in rows]
    saved: dict[str, list[tuple[str, int]]] = {run_id: [] for run_id in ids}
    used: dict[str, list[str]] = {run_id: [] for run_id in ids}
    if ids:
        for span in conn.execute(
                select(spans.c.trace_id, spans.c.attributes, spans.c.step_from)
                .where(spans.c.trace_id.in_(ids), spans.c.kind == "checkpoint")
                .order_by(spans.c.position)):
            saved[span.trace_id].append((loads(span.attributes)["artifact_id"], span.step_from))
        for edge in conn.execute(
                select(edges.c.source_id, edges.c.target_id)
                .where(edges.c.source_id.in_(ids), edges.c.relationship == "consumes")
                .order_by(edges.c.position)):
            used[edge.source_id].append(edge.target_id)
    return [{**trace_row(row), "checkpoint_list": saved[row.id], "inputs": used[row.id]}
            for row in rows]


def trace_row(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.update(job=loads(data["job"]), tags=loads(data["tags"]),
                last_metrics=numbers(data["last_metrics"]), corrupted=bool(data["corrupted"]),
                failure_retryable=bool(data["failure_retryable"]),
                recovery=loads(data["recovery"]), best=loads(data["best"]) or None,
                lost_steps=loads(data["lost_steps"]) or None)
    return data


def ids_with_prefix(conn: Connection, prefix: str, kind: str, limit: int,
                    tenant: str | None = None) -> list[str]:
    """Ids starting with ``prefix`` (dashed UUID text): of runs (``kind`` run), artifacts
    (artifact), checkpoints (checkpoint) or both runs and artifacts (any); at most ``limit``."""
    found: list[str] = []
    if kind in ("run", "any"):
        runs = select(traces.c.id).where(_starts(conn, traces.c.id, prefix))
        if tenant is not None:
            runs = runs.where(traces.c.tenant_id == tenant)
        found += conn.execute(runs.order_by(traces.c.id).limit(limit)).scalars().all()
    if kind in ("artifact", "checkpoint", "any"):
        query = select(artifacts.c.id).where(_starts(conn, artifacts.c.id, prefix))
        if kind == "checkpoint":
            query = query.where(artifacts.c.type == "checkpoint")
        if tenant is not None:
            query = query.where(artifacts.c.tenant_id == tenant)
        found += conn.execute(query.order_by(artifacts.c.id).limit(limit)).scalars().all()
    return found[:limit]


MIN_DIGEST_PREFIX = 6
_HEX = re.compile(r"^[0-9a-f]+$")


def digest_with_prefix(conn: Connection, given: str) -> str | None:
    """The one stored checksum that ``given`` (a digest, or a prefix of at least
    MIN_DIGEST_PREFIX hex digits, optionally ``algorithm:``-prefixed) starts, or None when none
    does. Raises ValidationError (field ``checksum``) for a prefix that is too short, not hex,
    or shared by more than one stored digest."""
    prefix = given.strip().rpartition(":")[2].lower()
    if len(prefix) < MIN_DIGEST_PREFIX:
        raise ValidationError("checksum", f"give at least {MIN_DIGEST_PREFIX} hex digits of the "
                                          "digest", given)
    if not _HEX.match(prefix):
        raise ValidationError("checksum", "must be hex digits (sha256:... or a prefix of the "
                                          "digest)", given)
    found = conn.execute(select(artifacts.c.checksum).distinct()
                         .where(_starts(conn, artifacts.c.checksum, prefix))
                         .order_by(artifacts.c.checksum).limit(3)).scalars().all()
    if len(found) > 1:
        shown = ", ".join(digest[:16] + "..." for digest in found[:2])
        raise ValidationError("checksum", f"{prefix!r} is the start of more than one digest "
                                          f"({shown}{', ...' if len(found) > 2 else ''}); give "
                                          "more digits", given)
    return found[0] if found else None


def _starts(conn: Connection, column: Any, prefix: str) -> Any:
    """``column`` starts with ``prefix`` (hex digits and dashes only). On SQLite a range on
    the primary key as well (its binary order makes that exact, and the index is used)."""
    condition = column.like(prefix + "%")
    if conn.dialect.name == "sqlite":
        condition = condition & (column >= prefix) & (column < prefix + "~")
    return condition
