"""The ``lineage`` command: thin entrypoints over ``lineage.Tracker``.

Each command parses its arguments (click), calls one Tracker method (after resolving an id
prefix), and formats what it returns (``lineage.cli.format``). Exit codes: 0 success, 1 an
error of ours (or a file problem), reported as one ``lineage: error: ...`` line on stderr, 2 a
usage error, 130 interrupted (``lineage.cli.base``).

    lineage [--db URL] demo [--dir DIR] [--steps N]
    lineage [--db URL] runs [--status S] [--json]
    lineage [--db URL] runs show RUN [--steps N] [--json]
    lineage [--db URL] artifacts [--type T] [--run RUN] [--alias A] [--since T] [--as-of T] [--json]
    lineage [--db URL] artifacts show ARTIFACT [--json]

``lineage --help`` (or ``COMMAND --help``) lists the options; ``eval "$(_LINEAGE_COMPLETE=bash_source
lineage)"`` turns on shell completion (click's; also ``zsh_source`` and ``fish_source``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lineage.api import Tracker
from lineage.application.job_status import JOB_STATUSES
from lineage.application.validation import ARTIFACT_TYPES
from lineage.cli import format as fmt
from lineage.cli.base import (
    HELP_OPTIONS,
    PROG,
    Invocation,
    LineageGroup,
    command,
    fail,
    group,
    json_option,
    print_json,
    reader,
    unexpected,
)
from lineage.errors import ValidationError

# Modules adding commands: each has ``register(root: click.Group)`` and builds its commands with
# ``command``, ``group``, ``json_option`` and ``resolve`` from ``lineage.cli.base``.
COMMAND_GROUPS: tuple[str, ...] = ("lineage.cli.query", "lineage.cli.metrics",
                                   "lineage.cli.export", "lineage.cli.recovery",
                                   "lineage.cli.migrate", "lineage.cli.verify", "lineage.cli.server",
                                   "lineage.cli.tinker")
EPILOG = "The database defaults to LINEAGE_DATABASE_URL, else ./lineage.db (SQLite)."


# -- commands ------------------------------------------------------------------------------------


@command("demo", "record a small training run with a failure and its recovery")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("lineage-demo"),
              help="where to write the demo's data and checkpoints (default: ./lineage-demo)")
@click.option("--steps", type=click.IntRange(min=100), default=300,
              help="training steps (default: 300; at least 100)")
def _demo(cli: Invocation, directory: Path, steps: int) -> int:
    from lineage.demo import run_and_report  # NumPy is only needed here

    run_and_report(cli.db, directory, steps, cli.console)
    return 0


@group("runs", "list runs (the newest 100; --limit, --all); 'runs show RUN' for one run")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="only runs with this job status")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="show the newest N runs (oldest of them first)")
@click.option("--all", "every", is_flag=True, help="show every run")
@json_option
def _runs(cli: Invocation, status: str | None, limit: int, every: bool) -> int:
    with reader(cli) as tracker:
        total = tracker.run_count(status)
        views = tracker.runs(status=status, newest=None if every else limit)
    if cli.json:
        print_json([fmt.run_json(view) for view in views])
    elif views:
        cli.console.print(fmt.runs_table(views, cli.console.width))
        if len(views) < total:
            cli.console.print(f"the newest {len(views):,} of {total:,} runs; --limit N or --all "
                              "for more", style="dim")
    else:
        cli.console.print("no runs" + (f" with status {status}" if status else ""))
    return 0


@command("show", "a run's summary and its events in order",
         "RUN: run id, or a unique prefix of one.")
@click.argument("run", metavar="RUN")
@click.option("--steps", type=click.IntRange(min=0), default=5, metavar="N",
              help="show the first and last N step events (default: 5)")
@json_option
def _run_show(cli: Invocation, run: str, steps: int) -> int:
    with reader(cli) as tracker:
        run_id = tracker.resolve(run, "run")
        view = tracker.run(run_id)
        history = tracker.run_history(run_id, steps=steps)
        elided = _elided(tracker, run_id, view.steps, steps)
    shown, total = fmt.select_events(history, steps, elided), view.steps
    if cli.json:
        print_json({"run": fmt.run_json(view), "steps": fmt.steps_json(total, elided),
                     "events": [fmt.event_json(event, position) for position, event in shown
                                if not isinstance(event, fmt.Elided)]})
        return 0
    cli.console.print(fmt.run_summary(view))
    cli.console.print()
    cli.console.print(fmt.events_table(shown, total, elided))
    return 0


def _elided(tracker: Tracker, run_id: Any, total: int, keep: int) -> fmt.Elided | None:
    """The step events ``runs show`` leaves out: those between the first and last ``keep``."""
    if total <= 2 * keep:
        return None
    [first] = tracker.steps(run_id, after=keep, limit=1)
    [last] = tracker.steps(run_id, after=total - keep - 1, limit=1)
    return fmt.Elided(total - 2 * keep, first.step, last.step)


@group("artifacts", "list registered artifacts; 'artifacts show ID' for one")
@click.option("--type", "type_", type=click.Choice(ARTIFACT_TYPES), help="only artifacts of this type")
@click.option("--run", metavar="RUN", help="only those a run produced (id/prefix)")
@click.option("--alias", help="only those an alias (latest, best, ...) points to")
@click.option("--checksum", metavar="DIGEST", help="only those with this digest, or a unique "
              "prefix of at least 6 hex digits (sha256: optional)")
@click.option("--since", metavar="TIME", help="registered at or after (ISO 8601 or epoch seconds)")
@click.option("--until", metavar="TIME", help="registered at or before (ISO 8601 or epoch seconds)")
@click.option("--as-of", metavar="TIME|@POSITION",
              help="the registry as it was then: a time (ISO 8601 such as 2026-11-20T12:00Z, "
                   "or epoch seconds: a number from 1000000000 up) or a log position (@N, or a "
                   "whole number below 1000000000)")
@click.option("--status", type=click.Choice(("live", "retired", "expired")))
@click.option("--limit", type=click.IntRange(min=1), default=100)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
def _artifacts(cli: Invocation, type_: str | None, run: str | None, alias: str | None,
               checksum: str | None, since: str | None, until: str | None, as_of: str | None,
               status: str | None, limit: int, offset: int) -> int:
    moment = _position_or_time(as_of)
    with reader(cli) as tracker:
        run_id = None
        if run is not None:
            run_id = tracker.resolve(run, "run")
            tracker.run(run_id)  # an unknown run is an error, not an empty list
        views = tracker.artifacts(type=type_, run=run_id, alias=alias, checksum=checksum,
                                  since=since, until=until, as_of=moment,
                                  status=status, limit=limit, offset=offset)
    if cli.json:
        print_json(views)
    elif views:
        cli.console.print(fmt.artifacts_table(views, cli.console.width))
    else:
        cli.console.print("no artifacts")
    return 0


EPOCH_FROM = 1_000_000_000  # 2001-09-09 in epoch seconds; log positions stay far below it


def _position_or_time(as_of: str | None) -> Any:
    """``--as-of``, by one rule: ``@N`` is log position N, and so is a bare whole number below
    EPOCH_FROM; a number from EPOCH_FROM up is an epoch time (seconds, or ms/us/ns by
    magnitude) and anything else an ISO 8601 time (the Tracker parses times and names
    ``as_of`` when it cannot). Returns an int for a position, the text for a time."""
    if as_of is None:
        return None
    text = as_of.strip()
    if text.startswith("@"):
        if not text[1:].isdigit():
            raise ValidationError("--as-of", "@ must be followed by a log position (digits)", as_of)
        return int(text[1:])
    try:
        number = float(text)
    except ValueError:
        return text  # an ISO 8601 time
    if text.isdigit() and number < EPOCH_FROM:
        return int(text)
    if number < EPOCH_FROM:
        raise ValidationError("--as-of", f"must be a log position (a whole number, or @N) or "
                                         f"epoch seconds (at least {EPOCH_FROM})", as_of)
    return text


@command("show", "one artifact in full", "ARTIFACT: artifact id, or a unique prefix.")
@click.argument("artifact", metavar="ARTIFACT")
@json_option
def _artifact_show(cli: Invocation, artifact: str) -> int:
    with reader(cli) as tracker:
        view = tracker.artifact(tracker.resolve(artifact, "artifact"))
    if cli.json:
        print_json(view)
    else:
        cli.console.print(fmt.artifact_summary(view))
    return 0


_runs.add_command(_run_show)
_artifacts.add_command(_artifact_show)


# -- main ----------------------------------------------------------------------------------------


def build_cli() -> click.Group:
    """The ``lineage`` group with every command, those of COMMAND_GROUPS included."""
    root = LineageGroup(PROG, help="Query and demo the lineage event store.", epilog=EPILOG,
                        context_settings={"help_option_names": HELP_OPTIONS})
    for each in (_demo, _runs, _artifacts):
        root.add_command(each)
    for module in COMMAND_GROUPS:
        importlib.import_module(module).register(root)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); returns the exit code (the console
    script exits with it). Never raises SystemExit."""
    try:
        code = build_cli().main(argv, prog_name=PROG, standalone_mode=False)
    except click.UsageError as error:
        if error.ctx is not None:
            sys.stderr.write(f"{error.ctx.get_usage()}\n"
                             f"Try '{error.ctx.command_path} --help' for help.\n")
        fail(error.format_message())
        return error.exit_code
    except click.ClickException as error:
        fail(error.format_message())
        return error.exit_code
    except click.Abort:  # Ctrl-C while click was parsing
        fail("interrupted")
        return 130
    except SystemExit as exit_:  # shell completion (_LINEAGE_COMPLETE) ends with sys.exit
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    except Exception as error:  # the last resort, outside any command (lineage.cli.base)
        return unexpected(error)
    return code if isinstance(code, int) else 0
