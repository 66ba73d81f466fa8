"""The REST read API: what ``lineage.Tracker`` answers, for the token's tenant, from the read
models (caught up first, as every query). Lists are paged (``limit``/``offset``; the audit by
``after``, the quarantine by ``after_model``/``after_position``); a run or artifact of another
tenant is not found (404), as one that does not exist.
The answers are the read models' rows; a remote tracker turns them into the same ``RunView``
and ``ArtifactView`` a local one returns. A run's steps and history are stored events
(``lineage.remote.wire.event_data``), read from the store itself as ``Tracker.steps`` and
``Tracker.run_history`` do, paged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from lineage.application.job_status import JOB_STATUSES
from lineage.application.recovery_select import lost_steps
from lineage.application.run_history import run_history
from lineage.application.validation import ARTIFACT_TYPES
from lineage.errors import ArtifactNotFoundError, RunNotFoundError, ValidationError
from lineage.remote.wire import event_data

from .app import LineageJSON, require
from .tokens import Principal

router = APIRouter(prefix="/v1", tags=["read"])
READ = Depends(require("read"))
# One Query object per parameter: FastAPI names a shared one after its first use (the audit's
# ``after``, declared with the object ``offset`` had used, was read from ``?offset=``).
def _limit() -> Any:
    return Query(100, ge=1, le=1000)


def _offset() -> Any:
    return Query(0, ge=0, le=2**62)


def _event_limit() -> Any:
    return Query(1000, ge=1, le=10_000)


def _core(request: Request) -> Any:
    return request.app.state.core


def _id(text: str, field: str) -> str:
    try:
        return str(UUID(text))
    except ValueError:
        raise ValidationError(field, f"must be a UUID, got {text[:64]!r}") from None


def _one_of(value: str | None, field: str, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise ValidationError(field, f"must be one of {', '.join(allowed)}, got {value[:64]!r}")
    return value


def own_run(core: Any, who: Principal, run_id: str) -> dict[str, Any]:
    row: dict[str, Any] = core.views.run(_id(run_id, "run"))
    if row["tenant_id"] != who.tenant_id:
        raise RunNotFoundError(run_id)
    return row


def _own_node(core: Any, who: Principal, node_id: str) -> str:
    node = _id(node_id, "id")
    if _tenant(core, node) == who.tenant_id:
        return node
    raise ArtifactNotFoundError(node_id)


@router.get("/runs")
def runs(request: Request, status: str | None = None, job_status: str | None = None,
         watched: bool = False, limit: int = _limit(), offset: int = _offset(),
         who: Principal = READ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _core(request).views.runs(
        status=_one_of(status, "status", JOB_STATUSES),
        job_status=_one_of(job_status, "job_status", JOB_STATUSES), watched=watched,
        limit=limit, offset=offset, tenant=who.tenant_id)
    return rows


@router.get("/run-count")
def run_count(request: Request, status: str | None = None, job_status: str | None = None,
              who: Principal = READ) -> int:
    return int(_core(request).views.run_count(status=_one_of(status, "status", JOB_STATUSES),
                                              job_status=_one_of(job_status, "job_status",
                                                                 JOB_STATUSES),
                                              tenant=who.tenant_id))


@router.get("/runs/{run_id}")
def run(request: Request, run_id: str, who: Principal = READ) -> dict[str, Any]:
    return own_run(_core(request), who, run_id)


@router.get("/runs/{run_id}/trace")
def trace(request: Request, run_id: str, format: Literal["lineageir", "nested"] = "lineageir",
          who: Principal = READ) -> dict[str, Any]:
    core = _core(request)
    own_run(core, who, run_id)
    return dict(core.views.trace(_id(run_id, "run"), shape=format))


@router.get("/runs/{run_id}/metrics/{name}")
def metric(request: Request, run_id: str, name: str, buckets: int | None = Query(None, ge=1),
           who: Principal = READ) -> Any:
    core = _core(request)
    own_run(core, who, run_id)
    if buckets is not None:
        return core.views.metric_buckets(_id(run_id, "run"), name, buckets)
    history = core.views.metric_history(_id(run_id, "run"), name)
    return {"steps": list(history.steps), "values": list(history.values)}


@router.get("/ids")
def ids(request: Request, prefix: str = Query(..., max_length=36, pattern="^[0-9a-f-]+$"),
        kind: Literal["run", "artifact", "checkpoint", "any"] = "any",
        limit: int = Query(4, ge=1, le=100), who: Principal = READ) -> list[str]:
    return list(_core(request).views.ids_with_prefix(prefix, kind=kind, limit=limit,
                                                     tenant=who.tenant_id))


@router.get("/artifacts")
def artifacts(request: Request, type: str | None = None, run: str | None = None,
              alias: str | None = None, checksum: str | None = None, since: str | None = None,
              until: str | None = None, as_of: str | None = None, status: str | None = None,
              limit: int = _limit(), offset: int = _offset(), who: Principal = READ) -> list[Any]:
    when: Any = as_of
    if as_of is not None and as_of.startswith("@") and as_of[1:].isdigit():
        when = int(as_of[1:])  # a log position, as `lineage artifacts --as-of @N`
    rows: list[Any] = _core(request).views.artifacts(
        type=_one_of(type, "type", ARTIFACT_TYPES), run=None if run is None else _id(run, "run"),
        alias=alias, checksum=checksum, since=since, until=until, as_of=when, status=status,
        limit=limit, offset=offset, tenant=who.tenant_id)
    return rows


@router.get("/artifacts/{artifact_id}")
def artifact(request: Request, artifact_id: str, who: Principal = READ) -> dict[str, Any]:
    row: dict[str, Any] = _core(request).views.artifact(_id(artifact_id, "artifact"))
    if row["tenant_id"] != who.tenant_id:
        raise ArtifactNotFoundError(artifact_id)
    return row


@router.get("/lineage/{node_id}")
def lineage(request: Request, node_id: str,
            direction: Literal["up", "down", "both"] = "up", depth: int = Query(20, ge=0, le=100),
            who: Principal = READ) -> Any:
    core = _core(request)
    # encoded as it is: FastAPI's validation of a large graph would cost more than the walk
    return LineageJSON(dict(core.views.lineage(_own_node(core, who, node_id),
                                               direction=direction, depth=depth)))


@router.get("/audit")
def audit(request: Request, subject: str | None = None, actor: str | None = None,
          kind: str | None = None, since: str | None = None, until: str | None = None,
          steps: bool = False, after: int = _offset(), limit: int = _limit(),
          who: Principal = READ) -> list[dict[str, Any]]:
    core = _core(request)
    rows = core.views.audit(subject=None if subject is None else _id(subject, "subject"),
                            actor=actor, kind=kind, since=since, until=until,
                            include_steps=steps, after=after, limit=limit, tenant=who.tenant_id)
    return [row for row in rows if row.get("tenant_id", who.tenant_id) == who.tenant_id]


@router.get("/aliases/{name}")
def alias_history(request: Request, name: str, scope: str | None = None,
                  who: Principal = READ) -> list[dict[str, Any]]:
    core = _core(request)
    rows = core.views.alias_history(name, scope=scope)
    return [row for row in rows if _tenant(core, row["artifact_id"]) == who.tenant_id]


@router.get("/runs/{run_id}/steps")
def steps(request: Request, run_id: str, after: int = _offset(), limit: int = _event_limit(),
          last: bool = False, who: Principal = READ) -> list[dict[str, Any]]:
    """Step events of the run after stream position ``after`` (with ``last``: its final
    ``limit``), in the order logged."""
    core = _core(request)
    own_run(core, who, run_id)
    found = core.reads.steps(_id(run_id, "run"), after=after, limit=limit, last=last)
    return [event_data(0, event, core.mapper) for event in found]


@router.get("/runs/{run_id}/history")
def history(request: Request, run_id: str, steps: int | None = Query(None, ge=0, le=2**62),
            offset: int = _offset(), limit: int = _event_limit(),
            who: Principal = READ) -> list[dict[str, Any]]:
    """The run's own events and its first and last ``steps`` step events (all when not
    given), in log order, with their log positions: ``limit`` of them from ``offset``."""
    core = _core(request)
    own_run(core, who, run_id)
    reads = core.reads
    pairs = run_history(reads.store, reads.blocks, reads.mapper, UUID(_id(run_id, "run")), steps,
                        offset, limit)
    return [event_data(position, event, core.mapper) for position, event in pairs]


@router.get("/runs/{run_id}/lost-steps")
def lost(request: Request, run_id: str, after_step: int = Query(..., ge=0, le=2**63 - 1),
         who: Principal = READ) -> dict[str, int] | None:
    """The steps the run logged after ``after_step`` (first, last, count), or null: what a
    recovery from a checkpoint at ``after_step`` loses."""
    core = _core(request)
    own_run(core, who, run_id)
    found = lost_steps(core.reads, UUID(_id(run_id, "run")), after_step)
    return None if found is None else dataclasses.asdict(found)


@router.get("/quarantine")
def quarantine(request: Request, read_model: str | None = Query(None, max_length=64),
               after_model: str | None = Query(None, max_length=64),
               after_position: int = _offset(), limit: int = _limit(),
               offset: int = Query(0, ge=0, le=0, description="gone: page with after_model "
                                   "and after_position (an old client's offset is refused, "
                                   "not ignored)"),
               who: Principal = READ) -> list[dict[str, Any]]:
    """Events the read models quarantined, of this tenant's runs and artifacts (rows of
    streams the server cannot tie to the tenant are left out: ``lineage project status`` on
    the server shows them all), by read model and position: ``limit`` of them after the row
    (``after_model``, ``after_position``) that ended the page before (keyed, not counted)."""
    core = _core(request)
    after = None if after_model is None else (after_model, after_position)
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        rows = core.views.quarantined(read_model, after=after, limit=limit)
        found += [row for row in rows
                  if _tenant_of(core, str(row["originator_id"])) == who.tenant_id]
        if len(rows) < limit:
            break
        after = (rows[-1]["read_model"], rows[-1]["position"])
    return found[:limit]


def _tenant(core: Any, stream: str) -> str | None:
    """The tenant of a run's or an artifact's stream (None: no such stream)."""
    found = core.owner(stream)
    return None if found is None else str(found[1])


def _tenant_of(core: Any, stream: str) -> str | None:
    """``_tenant``, or None when the stream's first event does not decode (no tenant can be
    told: hidden)."""
    try:
        return _tenant(core, stream)
    except Exception:
        return None
