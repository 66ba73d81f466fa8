"""CLI commands over the read models: ``trace``, ``lineage``, ``audit`` and ``project``.

    lineage trace RUN [--json] [--format lineageir|nested]
    lineage lineage ID [--up|--down|--both] [--depth N] [--format tree|json|dot|mermaid]
    lineage audit [--subject ID] [--actor NAME] [--kind K] [--since T] [--until T]
                  [--steps] [--after POSITION] [--limit N] [--json]
    lineage project status | rebuild [NAME ...] | follow [--poll SECONDS]
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lineage.api import Tracker
from lineage.cli import graph as cli_graph
from lineage.cli.main import add_command, at_least, json_option, print_json, resolve, wants_json

READ_MODELS = ("traces", "registry", "edges", "audit", "step_metrics")


def register(commands: Any) -> None:
    trace = add_command(commands, "trace", _trace, "a run as a tree of spans (LineageIR)")
    trace.add_argument("run", metavar="RUN", help="run id, or a unique prefix of one")
    trace.add_argument("--format", choices=("lineageir", "nested"), default="lineageir",
                       help="JSON shape with --json: LineageIR graph (default) or nested")
    json_option(trace)

    graph = add_command(commands, "lineage", _lineage,
                        "ancestors / descendants of an artifact or run")
    graph.add_argument("node", metavar="ID", help="artifact or run id (or a unique prefix)")
    way = graph.add_mutually_exclusive_group()
    for flag, value in (("--up", "up"), ("--down", "down"), ("--both", "both")):
        way.add_argument(flag, dest="direction", action="store_const", const=value)
    graph.set_defaults(direction="up")
    graph.add_argument("--depth", type=at_least(0), default=20, help="edges to follow (default 20)")
    graph.add_argument("--format", choices=("tree", "json", "dot", "mermaid"), default="tree")
    json_option(graph)

    audit = add_command(commands, "audit", _audit, "who did what and when")
    audit.add_argument("--subject", metavar="ID", help="a run or artifact id (or prefix)")
    audit.add_argument("--actor", help="only events written by this actor")
    audit.add_argument("--kind", help="only events whose kind contains this (e.g. checkpoint)")
    audit.add_argument("--since", metavar="TIME", help="recorded at or after (ISO 8601)")
    audit.add_argument("--until", metavar="TIME", help="recorded at or before (ISO 8601)")
    audit.add_argument("--steps", action="store_true", help="include step events")
    audit.add_argument("--after", type=at_least(0), default=0, metavar="POSITION",
                       help="page: start after this log position")
    audit.add_argument("--limit", type=at_least(1), default=100)
    json_option(audit)

    project = add_command(commands, "project", _project_status, "read-model projections")
    actions = project.add_subparsers(dest="project_command", metavar="status|rebuild|follow")
    json_option(add_command(actions, "status", _project_status, "positions and lag"))
    rebuild = add_command(actions, "rebuild", _project_rebuild, "rebuild read models from 0")
    rebuild.add_argument("names", nargs="*", metavar="NAME",
                         help=f"read models to rebuild (default: all): {', '.join(READ_MODELS)}")
    follow = add_command(actions, "follow", _project_follow, "project continuously")
    follow.add_argument("--poll", type=float, default=0.5, metavar="SECONDS")


# -- handlers ------------------------------------------------------------------------------------


def _trace(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        catch_up(tracker, console)
        run_id = resolve(args.run, lambda: (v.id for v in tracker.runs()), "run")
        graph = tracker.trace(run_id, format=args.format if wants_json(args) else "lineageir")
    if wants_json(args):
        print_json(graph)
    else:
        console.print(cli_graph.trace_tree(graph))
    return 0


def _lineage(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        catch_up(tracker, console)
        node = resolve(args.node, lambda: _all_ids(tracker), "artifact")
        graph = tracker.lineage(node, direction=args.direction, depth=args.depth)
    if args.format == "json" or wants_json(args):
        print_json(graph)
    elif args.format == "dot":
        console.print(cli_graph.dot(graph), markup=False, highlight=False, soft_wrap=True)
    elif args.format == "mermaid":
        console.print(cli_graph.mermaid(graph), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(cli_graph.lineage_tree(graph))
    return 0


def _audit(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        catch_up(tracker, console)
        subject = None
        if args.subject is not None:
            subject = resolve(args.subject, lambda: _all_ids(tracker), "artifact")
        rows = tracker.audit(subject=subject, actor=args.actor, kind=args.kind, since=args.since,
                             until=args.until, include_steps=args.steps, after=args.after,
                             limit=args.limit)
    if wants_json(args):
        print_json(rows)
    elif rows:
        console.print(cli_graph.audit_table(rows))
        if len(rows) == args.limit:
            console.print(f"more: --after {rows[-1]['position']}")
    else:
        console.print("no events")
    return 0


def _project_status(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        statuses = tracker.views.runner.status()
    if wants_json(args):
        print_json([{"name": s.name, "position": s.position, "head": s.head, "lag": s.lag}
                    for s in statuses])
        return 0
    table = Table(title="read models", box=None)
    for column in ("read model", "position", "head", "lag"):
        table.add_column(column, justify="left" if column == "read model" else "right")
    for s in statuses:
        table.add_row(s.name, str(s.position), str(s.head), str(s.lag))
    console.print(table)
    return 0


def _project_rebuild(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker, _progress(console) as progress:
        runner = tracker.views.runner
        task = progress.add_task("rebuilding", total=tracker.store.max_position() or 1)
        applied = runner.rebuild(args.names, progress=lambda at, head: progress.update(
            task, completed=at, total=head))
    console.print(f"rebuilt {', '.join(args.names) or 'all read models'}: {applied} events")
    return 0


def _project_follow(args: argparse.Namespace, console: Console) -> int:
    stop = threading.Event()
    with Tracker(args.db, create=False) as tracker:
        runner = tracker.views.runner
        console.print(f"following {tracker.location} (Ctrl-C to stop)")
        def report(applied: int) -> None:
            if applied:
                console.print(f"projected {applied} events; lag "
                              f"{max(s.lag for s in runner.status())}")

        try:
            runner.follow(stop, poll_s=args.poll, on_batch=report)
        except KeyboardInterrupt:
            stop.set()
    return 0


def catch_up(tracker: Tracker, console: Console, *, threshold: int = 20_000) -> None:
    """Bring the read models to the head before a query, with a progress bar (on stderr) when
    the backlog is long enough for someone to wonder what is happening."""
    runner = tracker.views.runner
    lag = max((status.lag for status in runner.status()), default=0)
    if lag < threshold:
        return
    stderr = Console(stderr=True)
    with _progress(stderr) as progress:
        task = progress.add_task("projecting", total=lag)
        start = tracker.store.max_position() - lag
        runner.catch_up(lambda at, head: progress.update(task, completed=at - start, total=head - start))


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=not console.is_terminal)


def _all_ids(tracker: Tracker) -> list[Any]:
    return [*(v.id for v in tracker.runs()), *(a.id for a in tracker.artifacts(limit=10_000))]
