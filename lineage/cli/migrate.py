"""``lineage migrate``: store the steps of an older database as step blocks, in place.

    lineage migrate [--vacuum | --no-vacuum] [--json]

Compacts the legacy one-row-per-step layout (``lineage.application.migration``), rebuilds the
read models, then gives the freed space back (``--vacuum``, the default when steps were
compacted). Interrupted (Ctrl-C, a kill), it leaves what it committed migrated: run it again to
finish. Refuses a read-only store, and a store another process projects into (or, on SQLite,
has open) with one line and exit code 1.
"""

from __future__ import annotations

import time
from typing import Any

import click

from lineage.bootstrap import open_step_migration
from lineage.cli.base import Invocation, command, fail, json_option, print_json
from lineage.cli.query import _progress


def register(root: click.Group) -> None:
    root.add_command(_migrate)


@command("migrate", "store an older database's steps as step blocks (in place, resumable)",
         "Each run of consecutive one-row-per-step events becomes one block row at the same "
         "place in the log; then the read models are rebuilt. Stop every process that uses the "
         "database first. Interrupted, run it again: it carries on where it stopped.")
@click.option("--vacuum/--no-vacuum", default=None,
              help="give the freed space back afterwards (rewrites the database; default: when "
                   "steps were compacted)")
@json_option
def _migrate(cli: Invocation, vacuum: bool | None) -> int:
    try:
        report = _run(cli, vacuum)
    except KeyboardInterrupt:
        fail("interrupted: what was done so far is kept; run lineage migrate again to finish")
        return 130
    if cli.json:
        print_json(report)
    else:
        cli.console.print(_summary(report), highlight=False)
    return 0


def _run(cli: Invocation, vacuum: bool | None) -> dict[str, Any]:
    """Compact, refresh the read models, vacuum: what was done, for the report."""
    console = cli.console
    report: dict[str, Any] = {}
    with open_step_migration(cli.db) as migration:
        report["database"] = migration.location
        report["size_before"] = migration.size_bytes()
        with _progress(console) as progress:
            task = progress.add_task("compacting steps", total=None)
            started = time.monotonic()
            done = migration.compact(lambda at, head: progress.update(task, completed=at,
                                                                       total=head))
            report["compact_s"] = round(time.monotonic() - started, 3)
        with _progress(console) as progress:
            task = progress.add_task("rebuilding read models", total=None)
            started = time.monotonic()
            report["projected"] = migration.refresh(lambda at, head: progress.update(
                task, completed=at, total=head))
            report["refresh_s"] = round(time.monotonic() - started, 3)
        if vacuum or (vacuum is None and done.steps > 0):
            started = time.monotonic()
            with console.status("giving the freed space back (vacuum)"):
                migration.vacuum()
            report["vacuum_s"] = round(time.monotonic() - started, 3)
        report["size_after"] = migration.size_bytes()
    report.update(done._asdict())
    return report


def _summary(report: dict[str, Any]) -> str:
    steps, seconds = report["steps"], report["compact_s"]
    if not steps:
        lines = [f"{report['database']}: no one-row-per-step events left to migrate"]
    else:
        rate = f" ({steps / seconds:,.0f} steps/s)" if seconds > 0 else ""
        lines = [f"{report['database']}: migrated {steps:,} steps into {report['blocks']:,} "
                 f"blocks in {seconds:.1f} s{rate}; {report['ids_dropped']:,} generated step "
                 "ids left the event-id index"]
    if report["rows_left"]:
        lines.append(f"{report['rows_left']:,} step rows could not be converted and were left "
                     "as they were (they still read as before)")
    lines.append(f"read models: {report['projected']:,} events projected")
    lines.append(f"size: {_mb(report['size_before'])} -> {_mb(report['size_after'])}"
                 + ("" if "vacuum_s" in report else " (not vacuumed: --vacuum gives the "
                                                     "freed space back)"))
    return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"
