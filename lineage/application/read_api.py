"""The Tracker's queries (DESIGN §5): one read path, the read models.

The read models (``lineage.projections``, on the store's own database) are pushed in by the
composition root as ``views``. Every query flushes the writer, lets the projections catch up to
the head, then asks them: runs, a run, artifacts, an artifact, id prefixes, traces, lineage,
audit, metric history. Their cost does not grow with the number of steps.

Two accessors return the stored events themselves rather than a read model: ``steps`` (a range
of one run's step stream, by its index) and ``run_events`` (the run's own stream, with its steps
interleaved in log order). They read single streams by index, never the whole log, and never
replay an aggregate: replay is only for deciding a command (the writer's unit of work, and
retention's repair of deletions a crash interrupted).
"""

from __future__ import annotations

import re
from typing import Any, overload
from uuid import UUID

from eventsourcing.persistence import Mapper

from lineage.application import validation
from lineage.application.commands import id_of
from lineage.application.job_status import JOB_STATUSES
from lineage.application.metric_history import MetricHistory
from lineage.application.run_history import run_history
from lineage.application.views import ArtifactView, RunView, artifact_view, run_view
from lineage.codec.step_read import BlockCodec, read_last_steps, read_steps
from lineage.domain import StepRecorded, ids
from lineage.errors import ArtifactNotFoundError, RunNotFoundError, ValidationError
from lineage.ports import EventStore, ReadModelsPort

PAGE = 1000
ID_KINDS = ("run", "artifact", "checkpoint", "any")
_ID_PREFIX = re.compile(r"^[0-9a-f-]+$")


class ReadAPI:
    views: ReadModelsPort
    store: EventStore
    mapper: Mapper

    @property
    def blocks(self) -> BlockCodec:
        return BlockCodec(self.mapper)

    def flush(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    # -- runs ----------------------------------------------------------------------------------

    def run(self, run: Any) -> RunView:
        """One run; RunNotFoundError when the store has none with that id."""
        run_id = id_of(run, "run")
        self.flush()
        return run_view(self.views.run(str(run_id)))

    def runs(self, status: str | None = None, *, newest: int | None = None) -> list[RunView]:
        """Every run, oldest first (with ``newest``, only the last ``newest`` of them); with
        ``status``, only runs with that job status (pending, running, completed, failed,
        corrupted, superseded, cancelled: see lineage.application.job_status)."""
        self.flush()
        job_status = _status(status)
        offset = 0 if newest is None else max(
            self.views.run_count(job_status=job_status) - _count(newest), 0)
        found: list[RunView] = []
        while newest is None or len(found) < newest:
            size = PAGE if newest is None else min(PAGE, newest - len(found))
            page = self.views.runs(job_status=job_status, limit=size, offset=offset + len(found))
            found += [run_view(row) for row in page]
            if len(page) < size:
                break
        return found

    def watched_runs(self) -> list[RunView]:
        """The runs a recovery monitor looks at, oldest first: not superseded, and corrupted,
        with a retryable failure recorded, or running (its process may be gone)."""
        self.flush()
        found: list[RunView] = []
        while True:
            page = self.views.runs(watched=True, limit=PAGE, offset=len(found))
            found += [run_view(row) for row in page]
            if len(page) < PAGE:
                return found

    def run_count(self, status: str | None = None) -> int:
        """How many runs there are (with ``status``, with that job status)."""
        self.flush()
        return self.views.run_count(job_status=_status(status))

    def resolve(self, text: str, kind: str = "run") -> UUID:
        """The id ``text`` names: a full id, or the one ``kind`` (run, artifact, checkpoint or
        any) whose id starts with it. NotFoundError when none does; ValidationError when
        ``text`` is not hex or matches several."""
        if kind not in ID_KINDS:
            raise ValidationError("kind", f"must be one of {', '.join(ID_KINDS)}", kind)
        if isinstance(text, UUID):
            return text
        if not isinstance(text, str):
            raise ValidationError("artifact" if kind == "any" else kind, "must be an id or an id "
                                  f"prefix (a string), got {type(text).__name__}", text)
        given = text.strip().lower()
        try:
            return UUID(given)
        except ValueError:
            pass
        label = "artifact" if kind == "any" else kind
        if not _ID_PREFIX.match(given):
            article = "an" if label[0] in "aeiou" else "a"
            raise ValidationError(label, f"{text!r} is not {article} {label} id or a prefix of one",
                                  text)
        self.flush()
        matches = self.views.ids_with_prefix(_dashed(given.replace("-", "")), kind=kind, limit=4)
        if not matches:
            raise RunNotFoundError(text) if kind == "run" else ArtifactNotFoundError(text)
        if len(matches) > 1:
            listed = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
            raise ValidationError(label, f"id prefix {text!r} matches more than one {label} "
                                         f"({listed}); give more characters", text)
        return UUID(matches[0])

    def steps(self, run: Any, *, after: int = 0, limit: int | None = None,
              last: bool = False) -> list[StepRecorded]:
        """Step events of a run in the order logged (``after`` is a stream position); with
        ``last``, the final ``limit`` steps (still in logged order)."""
        stream = ids.step_stream_id(id_of(run, "run"))
        after = validation.step(after, "after")
        limit = None if limit is None else validation.positive_int(limit, "limit")
        if last and limit is not None:
            found = read_last_steps(self.store, self.blocks, stream, limit)
            found = [step for step in found if step.seq > after]
        else:
            found = read_steps(self.store, self.blocks, stream, after + 1,
                               None if limit is None else after + limit)
        return [step.as_event(stream) for step in found]

    def run_events(self, run: Any, *, steps: bool = True) -> list[Any]:
        """The run's own events and (when ``steps``) its step events, in log order."""
        return [event for _, event in self.run_history(run, steps=None if steps else 0)]

    def run_history(self, run: Any, *, steps: int | None = None) -> list[tuple[int, Any]]:
        """(log position, event) pairs of the run's own events and of its first and last
        ``steps`` step events (all of them when None), in log order; a step's position is its
        block's. Reads the run's stream and the chosen steps of its step stream
        (``lineage.application.run_history``)."""
        return run_history(self.store, self.blocks, self.mapper, id_of(run, "run"), steps)

    # -- artifacts -----------------------------------------------------------------------------

    def artifact(self, artifact: Any) -> ArtifactView:
        """One registry entry, with its aliases, pins, deletion and verification."""
        artifact_id = id_of(artifact, "artifact")
        self.flush()
        return artifact_view(self.views.artifact(str(artifact_id)))

    def artifacts(self, *, type: str | None = None, run: Any = None, alias: str | None = None,
                  checksum: str | None = None, since: Any = None, until: Any = None,
                  as_of: Any = None, status: str | None = None, limit: int = 100,
                  offset: int = 0) -> list[ArtifactView]:
        """The registry, oldest first, filtered; ``as_of`` (a time or a notification position)
        gives it as it was then (what was registered, its status and aliases then)."""
        run_id = None if run is None else str(id_of(run, "run"))
        type, alias, checksum, status = (_filter(value, name) for value, name in (
            (type, "type"), (alias, "alias"), (checksum, "checksum"), (status, "status")))
        if isinstance(as_of, int) and not isinstance(as_of, bool):
            as_of = validation.step(as_of, "as_of")
        offset = validation.step(offset, "offset")
        self.flush()
        rows = self.views.artifacts(type=type, run=run_id, alias=alias, checksum=checksum,
                                    since=since, until=until, as_of=as_of, status=status,
                                    limit=limit, offset=offset)
        return [artifact_view(row) for row in rows]

    # -- traces, lineage, audit ----------------------------------------------------------------

    def trace(self, run: Any, *, format: str = "lineageir") -> dict[str, Any]:
        """The run's LineageIR graph (``format="nested"`` for the seed's nested shape)."""
        self.flush()
        return dict(self.views.trace(str(id_of(run, "run")), shape=format))

    def lineage(self, node: Any, *, direction: str = "up", depth: int = 20) -> dict[str, Any]:
        """Ancestors / descendants of an artifact or run (one recursive SQL query per walk)."""
        self.flush()
        return dict(self.views.lineage(str(id_of(node, "artifact")), direction=direction, depth=depth))

    def audit(self, *, subject: Any = None, actor: str | None = None, kind: str | None = None,
              since: Any = None, until: Any = None, include_steps: bool = False, after: int = 0,
              limit: int = 100) -> list[dict[str, Any]]:
        """Who did what and when (one row per event), oldest first, paged by ``after``."""
        subject_id = None if subject is None else str(id_of(subject, "subject"))
        actor, kind = _filter(actor, "actor"), _filter(kind, "kind")
        after = validation.step(after, "after")
        self.flush()
        return list(self.views.audit(subject=subject_id, actor=actor, kind=kind, since=since,
                                     until=until, include_steps=bool(include_steps), after=after,
                                     limit=limit))

    def alias_history(self, name: str, *, scope: Any = None) -> list[dict[str, Any]]:
        name = validation.text(name, "alias", max_length=validation.ALIAS_MAX)
        scope = None if scope is None else _filter(str(scope), "scope")
        self.flush()
        return list(self.views.alias_history(name, scope=scope))

    @overload
    def metric_history(self, run: Any, name: str, *, buckets: None = None) -> MetricHistory: ...

    @overload
    def metric_history(self, run: Any, name: str, *, buckets: int) -> list[dict[str, Any]]: ...

    def metric_history(self, run: Any, name: str, *,
                       buckets: int | None = None) -> MetricHistory | list[dict[str, Any]]:
        """Metric ``name`` of a run, in the order logged. Every point: a ``MetricHistory``
        (two compact arrays, ``steps`` and ``values``; iterating gives ``(step, value)``
        pairs). With ``buckets``: at most that many buckets of consecutive points, each a dict
        with step_from, step_to, count, min, max (NaN skipped; None when all NaN) and last,
        read from the blocks' summaries (for plots: about ``2*buckets`` blocks are decoded,
        whatever the run's length). ValidationError for a bad name or ``buckets`` (an
        integer from 1 to ``validation.MAX_BUCKETS``)."""
        name = validation.text(name, "name")
        count = None if buckets is None else validation.buckets(buckets)
        run_id = str(id_of(run, "run"))
        self.flush()
        if count is None:
            return self.views.metric_history(run_id, name)
        return self.views.metric_buckets(run_id, name, count)

    def quarantined(self, read_model: str | None = None) -> list[dict[str, Any]]:
        """Events a read model could not apply (an event it fails on: a number beyond 64 bits,
        an unknown topic, a payload that does not decode) and skipped, oldest first per read
        model: dicts with read_model, position, event_id, topic, originator_id,
        originator_version, reason (``Class: message``) and quarantined_at. Empty when every
        event was applied; ``lineage project rebuild`` re-derives them."""
        self.flush()
        return list(self.views.quarantined(read_model))


def _filter(value: Any, field: str) -> str | None:
    """A text filter: None (no filter) or a one-line string (what a stored value can equal)."""
    return None if value is None else validation.text(value, field, max_length=validation.URI_MAX,
                                                      allow_empty=True)


def _status(status: str | None) -> str | None:
    if status is not None and status not in JOB_STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(JOB_STATUSES)}; "
                                        f"got {status!r}", status)
    return status


def _count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("newest", "must be a positive integer", value)
    return value


def _dashed(bare: str) -> str:
    """A prefix of 32 hex digits, with the dashes of the UUID text form where they fall."""
    cuts = [cut for cut in (8, 12, 16, 20) if cut < len(bare)]
    parts, start = [], 0
    for cut in cuts:
        parts.append(bare[start:cut])
        start = cut
    parts.append(bare[start:])
    return "-".join(parts)
