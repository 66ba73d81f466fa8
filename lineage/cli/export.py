"""CLI commands for OTLP export: ``export otlp`` and ``export status``.

    lineage export otlp [--from-start] [--follow] [--run RUN] [--dry-run] [--name NAME]
                        [--endpoint URL] [--protocol http/protobuf|grpc]
                        [--steps-per-span N] [--json]
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

import sys
import threading
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lineage.api import Tracker
from lineage.bootstrap import exporter_positions, open_otlp_exporter, open_store
from lineage.cli.base import Invocation, command, exclusive, group, json_option, print_json
from lineage.cli.export_openlineage import openlineage
from lineage.config import Settings
from lineage.config.otlp import GRPC, HTTP_PROTOBUF, OtlpSettings
from lineage.errors import CollectorUnavailableError, ValidationError

FOLLOW_BACKOFF_S = (1.0, 30.0)


def register(root: click.Group) -> None:
    root.add_command(_export)


def _database(cli: Invocation) -> str:
    return str(cli.db) if cli.db else Settings.load().database_url


@group("export", "send spans to an OTLP collector (Jaeger), OpenLineage events to a catalog",
       "Without a subcommand: status.")
def _export(cli: Invocation) -> int:
    return _show_status(cli)


@command("otlp", "export runs as OTLP traces, at least once")
@click.option("--from-start", is_flag=True,
              help="re-send everything from the first event (not just what is new)")
@click.option("--run", metavar="RUN", help="send only this run's spans (id or prefix); "
                                           "the tracked position is left alone")
@click.option("--follow", is_flag=True,
              help="keep following the log after catching up (Ctrl-C to stop)")
@click.option("--dry-run", is_flag=True,
              help="print the spans as OTLP/JSON lines instead of sending them")
@click.option("--name", default="otlp", help="tracked position name (default: otlp)")
@click.option("--endpoint", metavar="URL", help="collector URL (default: "
              "OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, else localhost)")
@click.option("--protocol", type=click.Choice((HTTP_PROTOBUF, GRPC)),
              help="default: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else http/protobuf")
@click.option("--steps-per-span", type=click.IntRange(min=0), metavar="N",
              help="step events a 'train steps' span (1: a span per step); default "
                   "LINEAGE_OTLP_STEPS_PER_SPAN, else 0: the bounded grouping of 'lineage trace'")
@json_option
def _otlp(cli: Invocation, from_start: bool, run: str | None, follow: bool, dry_run: bool,
          name: str, endpoint: str | None, protocol: str | None,
          steps_per_span: int | None) -> int:
    exclusive({"--from-start": from_start, "--run": run})
    if run and follow:
        raise ValidationError("--follow", "cannot be combined with --run (a run is sent once)")
    settings = OtlpSettings.load(endpoint=endpoint, protocol=protocol,
                                 steps_per_span=steps_per_span)
    runner = open_otlp_exporter(_database(cli), settings, name=name, from_start=from_start,
                                dry_run=sys.stdout if dry_run else None)
    quiet = dry_run or cli.json
    try:
        if run:
            with Tracker(_database(cli), create=False, export_otlp=False) as tracker:
                run_id = tracker.resolve(run, "run")
            runner.export_run(run_id)
        else:
            _backfill(runner, cli.console, quiet)
            if follow:
                _follow(runner, cli.console, settings.poll_s, quiet)
    finally:
        runner.transport.close()
        runner.store.close()
    _summary(cli, runner, settings, name=name, one_run=bool(run), dry_run=dry_run)
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


def _summary(cli: Invocation, runner: Any, settings: OtlpSettings, *, name: str, one_run: bool,
             dry_run: bool) -> None:
    stats = runner.stats
    result = {"endpoint": runner.transport.endpoint, "protocol": settings.protocol,
              "name": name, "spans": stats.spans, "requests": stats.requests,
              "bytes": stats.bytes, "rejected_spans": stats.rejected_spans,
              "position": stats.position, "tracked": runner.track and not one_run,
              "skipped": runner.skipped_rows()}
    if cli.json:
        print_json(result)
        return
    where = "printed" if dry_run else f"exported to {result['endpoint']}"
    line = (f"{where}: {stats.spans} spans in {stats.requests} request(s), {stats.bytes:,} bytes"
            + (f"; position {stats.position}" if result["tracked"] else ""))
    if stats.rejected_spans:
        line += f"; the collector rejected {stats.rejected_spans} span(s)"
    line += runner.skipped_line()
    (sys.stderr.write(line + "\n") if dry_run else cli.console.print(line, highlight=False))


@command("status", "exporter positions and lag")
@json_option
def _status(cli: Invocation) -> int:
    return _show_status(cli)


def _show_status(cli: Invocation) -> int:
    url = _database(cli)
    store = open_store(url, create=False)
    try:
        head = store.max_position()
        positions = exporter_positions(url)
    finally:
        store.close()
    rows = [{"name": name, "position": at, "head": head, "lag": max(head - at, 0)}
            for name, at in sorted(positions.items())]
    if cli.json:
        print_json(rows)
        return 0
    table = Table(title="followers of the event log", box=None)
    for column in ("name", "position", "head", "lag"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("name", "position", "head", "lag")))
    cli.console.print(table if rows else f"nothing exported yet (head {head})")
    return 0


_export.add_command(_otlp)
_export.add_command(_status)
_export.add_command(openlineage)
