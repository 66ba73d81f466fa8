"""``lineage export openlineage``: OpenLineage run events for data catalogs (Marquez).

    lineage export openlineage [--from-start] [--follow] [--dry-run] [--name NAME]
                               [--url URL] [--namespace NS] [--json]

Emits the OpenLineage events of everything after the tracked position (``--name``, default
``openlineage``), at least once, then stops, or with ``--follow`` keeps following the log until
Ctrl-C (the background exporter: run it beside training). ``--from-start`` emits everything
again (the same events: run ids are the run ids, times the stored ones); ``--dry-run`` prints
them as JSON lines. Settings: ``lineage.config.openlineage`` (``OPENLINEAGE_URL`` or the
client's own configuration).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from lineage.bootstrap import open_openlineage_exporter
from lineage.cli.base import Invocation, command, json_option, print_json
from lineage.config import Settings
from lineage.config.openlineage import OpenLineageSettings
from lineage.errors import ExportError


@command("openlineage", "emit OpenLineage run events (Marquez), at least once")
@click.option("--from-start", is_flag=True, help="emit everything again from the first event")
@click.option("--follow", is_flag=True, help="keep following the log (Ctrl-C to stop)")
@click.option("--dry-run", is_flag=True, help="print the events as JSON lines instead")
@click.option("--name", default="openlineage", help="tracked position name")
@click.option("--url", metavar="URL", help="Marquez-compatible API base URL (default: "
              "OPENLINEAGE_URL, else the openlineage client's configuration)")
@click.option("--namespace", metavar="NS", help="the jobs' namespace (default: lineage)")
@json_option
def openlineage(cli: Invocation, from_start: bool, follow: bool, dry_run: bool, name: str,
                url: str | None, namespace: str | None) -> int:
    settings = OpenLineageSettings.load(url=url, namespace=namespace)
    database = str(cli.db) if cli.db else Settings.load().database_url
    runner = open_openlineage_exporter(database, settings, name=name, from_start=from_start,
                                       dry_run=sys.stdout if dry_run else None)
    try:
        runner.export_to_head()
        if follow:
            _follow(runner, settings.poll_s)
    finally:
        runner.transport.close()
        runner.store.close()
    _summary(cli, runner, dry_run)
    return 0


def _follow(runner: Any, poll_s: float) -> None:
    stop = threading.Event()
    try:
        while not stop.is_set():
            try:
                runner.export_to_head(stop)
            except ExportError as error:  # the consumer is down: say so, retry from the position
                sys.stderr.write(f"lineage: warning: {error}; retrying\n")
            stop.wait(poll_s)
    except KeyboardInterrupt:
        stop.set()


def _summary(cli: Invocation, runner: Any, dry_run: bool) -> None:
    stats = runner.stats
    result = {"endpoint": runner.endpoint, "name": runner.name, "events": stats.events,
              "position": stats.position, "tracked": runner.track,
              "skipped": runner.skipped_rows()}
    if cli.json:
        print_json(result)
        return
    line = (f"{'printed' if dry_run else 'emitted to ' + runner.endpoint}: {stats.events} "
            f"OpenLineage event(s)" + (f"; position {stats.position}" if runner.track else "")
            + runner.skipped_line())
    (sys.stderr.write(line + "\n") if dry_run else cli.console.print(line, highlight=False))
