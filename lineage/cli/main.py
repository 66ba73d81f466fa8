"""The ``lineage`` command: thin entrypoints over ``lineage.Tracker``.

Each command parses its arguments, calls one Tracker method (after resolving an id prefix),
and formats what it returns (``lineage.cli.format``). Exit codes: 0 success, 1 an error of
ours (or a file problem), reported as one ``lineage: error: ...`` line on stderr, 2 a usage
error (argparse), 130 interrupted.

    lineage [--db URL] demo [--dir DIR] [--steps N]
    lineage [--db URL] runs [--status S] [--json]
    lineage [--db URL] runs show RUN [--steps N] [--json]
    lineage [--db URL] artifacts [--type T] [--run RUN] [--alias A] [--since T] [--as-of T] [--json]
    lineage [--db URL] artifacts show ARTIFACT [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from rich.console import Console

from lineage.api import Tracker
from lineage.application.job_status import JOB_STATUSES
from lineage.application.validation import ARTIFACT_TYPES
from lineage.cli import format as fmt
from lineage.errors import (
    ArtifactNotFoundError,
    LineageError,
    RunNotFoundError,
    ValidationError,
)

PROG = "lineage"
PIPE_WIDTH = 200  # when stdout is not a terminal (and COLUMNS is unset): don't fold tables
_ID_PREFIX = re.compile(r"^[0-9a-f-]+$")

Handler = Callable[[argparse.Namespace, Console], int]

# Modules adding command groups: each has ``register(commands)`` and uses ``add_command``,
# ``json_option``, ``at_least``, ``resolve`` and ``print_json`` from here.
COMMAND_GROUPS: tuple[str, ...] = ("lineage.cli.query", "lineage.cli.export",
                                   "lineage.cli.recovery")


# -- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Query and demo the lineage event store.",
        epilog="The database defaults to LINEAGE_DATABASE_URL, else ./lineage.db (SQLite).")
    _db_option(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = add_command(commands, "demo", _demo, "record a small training run with a failure "
                                             "and its recovery")
    demo.add_argument("--dir", type=Path, default=Path("lineage-demo"),
                      help="where to write the demo's data and checkpoints (default: "
                           "./lineage-demo)")
    demo.add_argument("--steps", type=at_least(100), default=300,
                      help="training steps (default: 300; at least 100)")

    runs = add_command(commands, "runs", _runs, "list runs; 'runs show RUN' for one run")
    runs.add_argument("--status", choices=JOB_STATUSES,
                      help="only runs with this job status")
    json_option(runs)
    show = add_command(runs.add_subparsers(dest="runs_command", metavar="show"), "show",
                    _run_show, "a run's summary and its events in order")
    show.add_argument("run", metavar="RUN", help="run id, or a unique prefix of one")
    show.add_argument("--steps", type=at_least(0), default=5, metavar="N",
                      help="show the first and last N step events (default: 5)")
    json_option(show)

    artifacts = add_command(commands, "artifacts", _artifacts,
                         "list registered artifacts; 'artifacts show ID' for one")
    artifacts.add_argument("--type", choices=ARTIFACT_TYPES, help="only artifacts of this type")
    artifacts.add_argument("--run", metavar="RUN", help="only those a run produced (id/prefix)")
    artifacts.add_argument("--alias", help="only those an alias (latest, best, ...) points to")
    artifacts.add_argument("--checksum", help="only those with this digest (sha256:... or hex)")
    artifacts.add_argument("--since", metavar="TIME", help="registered at or after (ISO 8601)")
    artifacts.add_argument("--until", metavar="TIME", help="registered at or before (ISO 8601)")
    artifacts.add_argument("--as-of", metavar="TIME|POSITION",
                           help="the registry as it was then (a time, or a log position)")
    artifacts.add_argument("--status", choices=("live", "retired", "expired"))
    artifacts.add_argument("--limit", type=at_least(1), default=100)
    artifacts.add_argument("--offset", type=at_least(0), default=0)
    json_option(artifacts)
    one = add_command(artifacts.add_subparsers(dest="artifacts_command", metavar="show"), "show",
                   _artifact_show, "one artifact in full")
    one.add_argument("artifact", metavar="ARTIFACT", help="artifact id, or a unique prefix")
    json_option(one)
    for module in COMMAND_GROUPS:
        importlib.import_module(module).register(commands)
    return parser


def add_command(commands: Any, name: str, handler: Handler, summary: str) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=summary)
    sub.set_defaults(handler=handler)
    _db_option(sub, default=argparse.SUPPRESS)  # also accepted after the subcommand
    return sub


def _db_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--db", "--database-url", dest="db", metavar="URL", default=default,
                        help="SQLAlchemy URL or SQLite file path of the event store")


def json_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a nested command must not reset a --json given before it.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


# -- commands ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, console: Console) -> int:
    from lineage.demo import run_and_report  # NumPy is only needed here

    run_and_report(args.db, args.dir, args.steps, console)
    return 0


def _runs(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        views = tracker.runs(status=args.status)
    if wants_json(args):
        print_json([fmt.run_json(view) for view in views])
    elif views:
        console.print(fmt.runs_table(views, console.width))
    else:
        console.print("no runs" + (f" with status {args.status}" if args.status else ""))
    return 0


def _run_show(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        run_id = resolve(args.run, lambda: (view.id for view in tracker.runs()), "run")
        view = tracker.run(run_id)
        events = tracker.run_events(run_id)
    shown, total, elided = fmt.select_events(events, args.steps)
    if wants_json(args):
        print_json({"run": fmt.run_json(view), "steps": fmt.steps_json(total, elided),
                     "events": [fmt.event_json(event, position) for position, event in shown
                                if not isinstance(event, fmt.Elided)]})
        return 0
    console.print(fmt.run_summary(view))
    console.print()
    console.print(fmt.events_table(shown, total, elided))
    return 0


def _artifacts(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        run_id = None
        if args.run is not None:
            run_id = resolve(args.run, lambda: (view.id for view in tracker.runs()), "run")
            tracker.run(run_id)  # an unknown run is an error, not an empty list
        as_of: Any = args.as_of
        if as_of is not None and as_of.isdigit():
            as_of = int(as_of)  # a log position
        views = tracker.artifacts(type=args.type, run=run_id, alias=args.alias,
                                  checksum=args.checksum, since=args.since, until=args.until,
                                  as_of=as_of, status=args.status, limit=args.limit,
                                  offset=args.offset)
    if wants_json(args):
        print_json(views)
    elif views:
        console.print(fmt.artifacts_table(views, console.width))
    else:
        console.print("no artifacts")
    return 0


def _artifact_show(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        artifact_id = resolve(args.artifact, lambda: (v.id for v in tracker.artifacts(limit=10_000)),
                              "artifact")
        view = tracker.artifact(artifact_id)  # replayed: pins, deletion, verification
        view = dataclasses.replace(view, aliases=tracker.views.artifact(str(artifact_id))["aliases"])
    if wants_json(args):
        print_json(view)
    else:
        console.print(fmt.artifact_summary(view))
    return 0


def resolve(text: str, candidates: Callable[[], Iterable[UUID]], kind: str) -> UUID:
    """A full id as given, else the one candidate whose id starts with ``text``.

    Raises RunNotFoundError / ArtifactNotFoundError when none matches, ValidationError when
    ``text`` is not hex or matches several.
    """
    given = text.strip().lower()
    try:
        return UUID(given)
    except ValueError:
        pass
    if not _ID_PREFIX.match(given):
        raise ValidationError(kind, f"{text!r} is not a {kind} id or a prefix of one", text)
    bare = given.replace("-", "")
    matches = [c for c in candidates() if str(c).startswith(given) or c.hex.startswith(bare)]
    if not matches:
        raise RunNotFoundError(text) if kind == "run" else ArtifactNotFoundError(text)
    if len(matches) > 1:
        listed = ", ".join(str(m) for m in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise ValidationError(kind, f"id prefix {text!r} matches {len(matches)} {kind}s "
                                    f"({listed}); give more characters", text)
    return matches[0]


# -- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # usage errors (2) and --help (0), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return int(args.handler(args, make_console()))
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (| head): not an error worth a message
        return 1
    except (LineageError, OSError) as error:
        _fail(str(error) or type(error).__name__)
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130


def make_console() -> Console:
    """Colour only on a terminal (rich decides); plain and wide when piped."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPE_WIDTH)
    return console


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def print_json(value: Any) -> None:
    sys.stdout.write(fmt.dumps(value) + "\n")


def _fail(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
