"""Formatting for the CLI: strict JSON for machines, rich tables for people.

Pure functions of the views and events ``Tracker`` returns; nothing here touches the store.
Values from the store are rendered as ``Text`` (never as console markup), so a run name or a
path with square brackets prints as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from rich import box
from rich.table import Table
from rich.text import Text

from lineage.application.views import ArtifactView, RunView
from lineage.cli.jsonout import dumps as dumps  # the CLI's JSON lives in lineage.cli.jsonout
from lineage.cli.jsonout import iterencode as iterencode
from lineage.cli.jsonout import jsonable as jsonable

STATUS_STYLES = {"running": "cyan", "completed": "green", "failed": "red",
                 "cancelled": "yellow", "superseded": "magenta", "live": "green",
                 "pending": "dim", "corrupted": "bold red"}
EVENT_STYLES = {"FailureDetected": "bold red", "RecoveryStarted": "yellow",
                "RecoveryCheckpointSelected": "yellow", "RecoveryCompleted": "yellow",
                "RecoveryFailed": "red", "RecoveryExhausted": "red", "ResumedFrom": "yellow",
                "CheckpointSaved": "blue", "EvaluationRecorded": "cyan", "StepRecorded": "dim",
                "RecoveryCheckpointRejected": "yellow", "StepsLost": "red",
                "BestCheckpointChanged": "green"}
# Fields every event has; the event table shows them in their own columns or not at all.
ENVELOPE = frozenset({"timestamp", "originator_id", "originator_version", "originator_topic",
                      "event_id", "occurred_at", "occurred_at_raw", "source", "tenant_id",
                      "actor", "run_id"})
STEP = "StepRecorded"
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


# -- JSON ----------------------------------------------------------------------------------------


def run_json(view: RunView) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(view)
    data["checkpoints"] = [{"artifact_id": str(artifact_id), "step": step}
                           for artifact_id, step in view.checkpoints]
    return data


def event_name(event: Any) -> str:
    return type(event).__name__


def event_json(event: Any, position: int) -> dict[str, Any]:
    """One stored event: its type, its place in the run's history, then all its fields."""
    state = dict(vars(event))
    head = {"position": position, "type": event_name(event),
            "stream": "steps" if event_name(event) == STEP else "run",
            "originator_id": state.pop("originator_id", None),
            "originator_version": state.pop("originator_version", None),
            "recorded_at": state.pop("timestamp", None)}
    state.pop("originator_topic", None)
    return jsonable({**head, **state})


def steps_json(total: int, elided: Elided | None) -> dict[str, Any]:
    """How many step events the run has and which were left out of ``events``."""
    count = elided.count if elided else 0
    return {"total": total, "shown": total - count, "elided": count,
            "elided_steps": [elided.first_step, elided.last_step] if elided else None}


# -- selecting events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Elided:
    """Stands where step events were left out: how many, and their step numbers."""

    count: int
    first_step: int
    last_step: int


def select_events(history: list[tuple[int, Any]], keep: int,
                  elided: Elided | None) -> list[tuple[int, Any]]:
    """``history`` (log position, event) pairs of every run event and the first and last
    ``keep`` step events (``Tracker.run_history``), with ``elided`` standing where the
    left-out step events begin."""
    if elided is None:
        return list(history)
    shown: list[tuple[int, Any]] = []
    seen = 0
    for position, event in history:
        if event_name(event) == STEP:
            seen += 1
            if seen == keep + 1:
                shown.append((position, elided))
        shown.append((position, event))
    if seen <= keep:  # no step shown after the left-out ones (keep 0)
        shown.append((shown[-1][0] if shown else 0, elided))
    return shown


# -- human output --------------------------------------------------------------------------------


def short_id(value: UUID | None) -> str:
    return "" if value is None else value.hex[:8]


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def exact(moment: datetime | None) -> str:
    """A time as ``--json`` prints it (ISO 8601, microseconds, offset): for a single record,
    whose times people paste into ``--since``, ``--until`` or ``--as-of``."""
    return "" if moment is None else str(jsonable(moment))


def number(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else _NON_FINITE.get(value, f"{value:.4g}")
    return str(value)


def metrics_text(metrics: Mapping[str, Any] | None, limit: int | None = None) -> str:
    items = list((metrics or {}).items())
    text = " ".join(f"{key}={number(value)}" for key, value in items[:limit])
    return text + (" ..." if limit is not None and len(items) > limit else "")


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLES.get(value, ""))


def table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                 collapse_padding=True, title_style="bold")


@dataclass(frozen=True)
class Column:
    """A list column: its header, the width it needs, and how to render one row's cell.
    ``priority`` 0 columns always show; others are dropped, highest first, to fit the width."""

    header: str
    width: int
    cell: Callable[[Any], Any]
    priority: int = 0
    right: bool = False


def fitted_table(columns: list[Column], rows: list[Any], width: int) -> Table:
    """A table of ``rows`` with as many columns as fit in ``width`` (in their given order)."""
    kept = {c.header for c in columns if c.priority == 0}
    used = sum(c.width + 2 for c in columns if c.priority == 0)
    for column in sorted((c for c in columns if c.priority), key=lambda c: c.priority):
        if used + column.width + 2 <= width:
            kept.add(column.header)
            used += column.width + 2
    shown = [c for c in columns if c.header in kept]
    grid = table()
    for column in shown:
        grid.add_column(column.header, min_width=column.width, justify="right" if column.right
                        else "left", no_wrap=column.header == "id", overflow="fold")
    for row in rows:
        grid.add_row(*(column.cell(row) for column in shown))
    return grid


RUN_COLUMNS = [
    Column("id", 36, lambda v: str(v.id)),
    Column("name", 8, lambda v: Text(v.name)),
    Column("status", 10, lambda v: status(v.job_status)),  # job status (lineage.application.job_status)
    Column("steps", 5, lambda v: str(v.steps), right=True),
    Column("last step", 4, lambda v: "" if v.last_step is None else str(v.last_step), 1, True),
    Column("last metrics", 24, lambda v: metrics_text(v.last_metrics, limit=3), 3),
    Column("started (UTC)", 19, lambda v: when(v.started_at), 4),
    Column("finished (UTC)", 19, lambda v: when(v.finished_at), 5),
    Column("resumed from", 8, lambda v: short_id(v.resumed_from), 2),
]
ARTIFACT_COLUMNS = [
    Column("id", 36, lambda v: str(v.id)),
    Column("type", 10, lambda v: v.type),
    Column("name", 8, lambda v: Text(v.name or ""), 6),
    Column("run", 8, lambda v: short_id(v.run_id), 1),
    Column("step", 4, lambda v: "" if v.step is None else str(v.step), 2, True),
    Column("size", 7, lambda v: "" if v.size is None else f"{v.size:,}", 4, True),
    Column("sha256", 12, lambda v: (v.checksum or "")[:12], 5),
    Column("status", 7, lambda v: status(v.status), 7),
    Column("aliases", 8, lambda v: Text(" ".join(v.aliases)), 8),
    Column("uri", 24, lambda v: Text(v.uri), 3),
]


def runs_table(views: list[RunView], width: int = 200) -> Table:
    return fitted_table(RUN_COLUMNS, views, width)


def summary_grid(rows: list[tuple[str, Any]]) -> Table:
    """A two-column label/value grid of the rows whose value is not empty, in order."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        if str(value):
            grid.add_row(label, value)
    return grid


def run_summary(view: RunView) -> Table:
    first = view.start_step + 1 if view.steps else None
    rows: list[tuple[str, Any]] = [
        ("run", str(view.id)), ("name", Text(view.name)),
        ("status", status(view.job_status).append(f"  {view.status_reason}" if view.status_reason
                                                  else "", style="default")),
        ("started (UTC)", when(view.started_at)), ("finished (UTC)", when(view.finished_at)),
        ("steps", f"{view.steps} logged" + (f", steps {first}-{view.last_step}" if first else "")),
        ("last metrics", metrics_text(view.last_metrics)),
        ("checkpoints", ", ".join(f"{short_id(a)}@{s}" for a, s in view.checkpoints) or "none"),
        ("evaluations", str(view.evaluations)),
        ("failures", f"{view.failures}" + (" (corrupted)" if view.corrupted else "")),
        ("resumed from", str(view.resumed_from or "")),
        ("superseded by", str(view.superseded_by or "")),
        ("inputs", ", ".join(str(i) for i in view.inputs)),
        *((f"job.{key}", _compact(value)) for key, value in view.job.items()),
        ("tags", metrics_text(view.tags)),
    ]
    return summary_grid(rows)


def _compact(value: Any) -> Text:
    if isinstance(value, str):
        return Text(value)
    return Text(json.dumps(jsonable(value), separators=(", ", ": "), ensure_ascii=False))


def event_details(event: Any) -> Text:
    """The event's own fields (not the envelope) as ``name=value`` pairs; ids shortened to 8
    hex digits (``runs show`` and ``artifacts show`` accept them), the job spec left to the
    run summary."""
    parts = []
    for key, value in vars(event).items():
        if key in ENVELOPE or key == "job" or value is None:
            continue
        if isinstance(value, Mapping):
            shown = "{" + metrics_text(value) + "}"
        elif isinstance(value, UUID):
            shown = short_id(value)
        else:
            shown = number(value)
        parts.append(f"{key}={shown}")
    return Text("  ".join(parts))


def events_table(shown: list[tuple[int, Any]], total_steps: int, elided: Elided | None) -> Table:
    title = f"Events ({total_steps} step events"
    grid = table(title + (f", {elided.count} elided; --steps N shows more)" if elided else ")"))
    grid.add_column("#", justify="right", no_wrap=True)
    grid.add_column("recorded (UTC)", no_wrap=True)
    grid.add_column("event", no_wrap=True)
    grid.add_column("details", overflow="fold")
    for position, event in shown:
        if isinstance(event, Elided):
            grid.add_row("", "", Text("...", style="dim"), Text(
                f"{event.count} step events elided (steps {event.first_step}-{event.last_step})",
                style="dim italic"))
            continue
        name = event_name(event)
        grid.add_row(str(position), when(event.timestamp),
                     Text(name, style=EVENT_STYLES.get(name, "")), event_details(event))
    return grid


def artifacts_table(views: list[ArtifactView], width: int = 200) -> Table:
    return fitted_table(ARTIFACT_COLUMNS, views, width)


def artifact_summary(view: ArtifactView) -> Table:
    digest = f"{view.checksum_algorithm}:{view.checksum}" if view.checksum else ""
    rows: list[tuple[str, Any]] = [
        ("artifact", str(view.id)), ("type", view.type), ("name", Text(view.name or "")),
        ("status", status(view.status)), ("uri", Text(view.uri)),
        ("size", "" if view.size is None else f"{view.size:,} bytes"), ("checksum", digest),
        ("format", view.format or ""), ("run", str(view.run_id or "")),
        ("step", "" if view.step is None else str(view.step)),
        ("optimizer state", "" if view.includes_optimizer is None
         else "yes" if view.includes_optimizer else "no"),
        ("parents", ", ".join(str(p) for p in view.parents)),
        ("same bytes as", ", ".join(str(other) for other in view.same_content)),
        ("aliases", " ".join(view.aliases)),
        ("kept because", "; ".join(view.pins.values())),
        ("bytes", view.deletion or ""),
        ("verified", "" if view.last_verified_ok is None
         else "checksum ok" if view.last_verified_ok else "CHECKSUM MISMATCH"),
        ("registered", exact(view.registered_at)),
        ("metadata", _compact(view.metadata) if view.metadata else ""),
    ]
    return summary_grid(rows)
