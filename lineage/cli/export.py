"""CLI commands for OTLP export: ``export otlp`` and ``export status``.

    lineage export otlp [--from-start] [--follow] [--run RUN] [--dry-run] [--name NAME]
                        [--endpoint URL] [--protocol http/protobuf|grpc] [--steps-per-span N]
                        [--json]
    lineage export status [--json]

``export otlp`` sends the spans of everything after the exporter's tracked position (``--name``,
default ``otlp``, shared with the background exporter of ``Tracker(export_otlp=True)``), then
stops, or with ``--follow`` keeps following the log until Ctrl-C. ``--from-start`` re-sends
everything (span ids are deterministic, so a collector sees the same spans again);
``--run RUN`` sends one run's spans and leaves the position alone; ``--dry-run`` prints OTLP/JSON
(one ExportTraceServiceRequest per line) instead of sending. Settings come from the standard
``OTEL_EXPORTER_OTLP_*`` variables (``lineage.config.otlp``); the flags override them.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lineage.application.views import RUN_STARTED
from lineage.bootstrap import open_otlp_exporter, open_positions, open_store
from lineage.cli.main import add_command, at_least, json_option, print_json, resolve, wants_json
from lineage.config import Settings
from lineage.config.otlp import GRPC, HTTP_PROTOBUF, OtlpSettings
from lineage.errors import CollectorUnavailableError, ValidationError

FOLLOW_BACKOFF_S = (1.0, 30.0)


def register(commands: Any) -> None:
    export = add_command(commands, "export", _status, "send spans to an OTLP collector (Jaeger)")
    actions = export.add_subparsers(dest="export_command", metavar="otlp|status")
    otlp = add_command(actions, "otlp", _otlp, "export runs as OTLP traces, at least once")
    scope = otlp.add_mutually_exclusive_group()
    scope.add_argument("--from-start", action="store_true",
                       help="re-send everything from the first event (not just what is new)")
    scope.add_argument("--run", metavar="RUN", help="send only this run's spans (id or prefix); "
                                                    "the tracked position is left alone")
    otlp.add_argument("--follow", action="store_true",
                      help="keep following the log after catching up (Ctrl-C to stop)")
    otlp.add_argument("--dry-run", action="store_true",
                      help="print the spans as OTLP/JSON lines instead of sending them")
    otlp.add_argument("--name", default="otlp", help="tracked position name (default: otlp)")
    otlp.add_argument("--endpoint", metavar="URL", help="collector URL (default: "
                      "OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, else localhost)")
    otlp.add_argument("--protocol", choices=(HTTP_PROTOBUF, GRPC),
                      help="default: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else http/protobuf")
    otlp.add_argument("--steps-per-span", type=at_least(1), metavar="N",
                      help="step events per step span (default: LINEAGE_OTLP_STEPS_PER_SPAN, 1)")
    json_option(otlp)
    json_option(add_command(actions, "status", _status, "exporter positions and lag"))


def _database(args: argparse.Namespace) -> str:
    return str(args.db) if args.db else Settings.load().database_url


def _otlp(args: argparse.Namespace, console: Console) -> int:
    if args.run and args.follow:
        raise ValidationError("--follow", "cannot be combined with --run (a run is sent once)")
    settings = OtlpSettings.load(endpoint=args.endpoint, protocol=args.protocol,
                                 steps_per_span=args.steps_per_span)
    runner = open_otlp_exporter(_database(args), settings, name=args.name,
                                from_start=args.from_start,
                                dry_run=sys.stdout if args.dry_run else None)
    quiet = args.dry_run or wants_json(args)
    try:
        if args.run:
            run_id = resolve(args.run, lambda: _run_ids(runner.store), "run")
            runner.export_run(run_id)
        else:
            _backfill(runner, console, quiet)
            if args.follow:
                _follow(runner, console, settings.poll_s, quiet)
    finally:
        runner.transport.close()
        runner.store.close()
    _summary(args, console, runner, settings)
    return 0


def _backfill(runner: Any, console: Console, quiet: bool) -> None:
    """Export up to the head, with a progress bar on a terminal."""
    start, head = runner.position, runner.head()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=quiet or not console.is_terminal) as progress:
        task = progress.add_task(f"exporting to {runner.transport.endpoint}",
                                 total=max(head - start, 1))
        runner.export_to_head(on_page=lambda stats: progress.update(
            task, completed=stats.position - start, total=max(runner.head() - start, 1)))


def _follow(runner: Any, console: Console, poll_s: float, quiet: bool) -> None:
    """Follow the log until Ctrl-C; an unavailable collector is reported and retried."""
    stop = threading.Event()
    if not quiet:
        console.print(f"following {runner.store.location} -> {runner.transport.endpoint} "
                      "(Ctrl-C to stop)")
    backoff = FOLLOW_BACKOFF_S[0]
    try:
        while not stop.is_set():
            try:
                covered = runner.export_to_head(stop)
                backoff = FOLLOW_BACKOFF_S[0]
            except CollectorUnavailableError as error:
                sys.stderr.write(f"lineage: warning: {error}; retrying in {backoff:.0f} s\n")
                stop.wait(backoff)
                backoff = min(backoff * 2, FOLLOW_BACKOFF_S[1])
                continue
            if covered and not quiet:
                console.print(f"exported up to position {runner.position} "
                              f"({runner.stats.spans} spans so far)")
            stop.wait(poll_s)
    except KeyboardInterrupt:
        stop.set()


def _summary(args: argparse.Namespace, console: Console, runner: Any,
             settings: OtlpSettings) -> None:
    stats = runner.stats
    result = {"endpoint": runner.transport.endpoint, "protocol": settings.protocol,
              "name": args.name, "spans": stats.spans, "requests": stats.requests,
              "bytes": stats.bytes, "rejected_spans": stats.rejected_spans,
              "position": stats.position, "tracked": runner.track and not args.run}
    if wants_json(args):
        print_json(result)
        return
    where = "printed" if args.dry_run else f"exported to {result['endpoint']}"
    line = (f"{where}: {stats.spans} spans in {stats.requests} request(s), {stats.bytes:,} bytes"
            + (f"; position {stats.position}" if result["tracked"] else ""))
    if stats.rejected_spans:
        line += f"; the collector rejected {stats.rejected_spans} span(s)"
    (sys.stderr.write(line + "\n") if args.dry_run else console.print(line, highlight=False))


def _status(args: argparse.Namespace, console: Console) -> int:
    url = _database(args)
    store = open_store(url, create=False)
    try:
        head = store.max_position()
        positions = open_positions(url).all()
    finally:
        store.close()
    rows = [{"name": name, "position": at, "head": head, "lag": max(head - at, 0)}
            for name, at in sorted(positions.items())]
    if wants_json(args):
        print_json(rows)
        return 0
    table = Table(title="followers of the event log", box=None)
    for column in ("name", "position", "head", "lag"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("name", "position", "head", "lag")))
    console.print(table if rows else f"nothing exported yet (head {head})")
    return 0


def _run_ids(store: Any) -> list[Any]:
    """Every run id, from the log's Run.Started notifications."""
    found: list[Any] = []
    start = 1
    while True:
        page = store.read_log(start, 1000, [RUN_STARTED])
        found.extend(note.originator_id for note in page)
        if len(page) < 1000:
            return found
        start = page[-1].id + 1
