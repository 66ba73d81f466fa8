"""CLI commands over the read models: ``trace``, ``lineage``, ``audit`` and ``project``.

    lineage trace RUN [--json] [--format lineageir|nested]
    lineage lineage ID [--up|--down|--both] [--depth N] [--format tree|json|dot|mermaid]
    lineage audit [--subject ID] [--actor NAME] [--kind K] [--since T] [--until T]
                  [--steps] [--after POSITION] [--limit N] [--json]
    lineage project status | rebuild [NAME ...] | follow [--poll SECONDS]

``project status`` also lists the events a read model could not apply and skipped (quarantined).
"""

from __future__ import annotations

import threading
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lineage.api import Tracker
from lineage.cli import graph as cli_graph
from lineage.cli.base import (
    Invocation,
    command,
    exclusive,
    group,
    json_option,
    print_json,
    reader,
)
from lineage.errors import ReadOnlyStoreError

READ_MODELS = ("traces", "registry", "edges", "audit", "step_metrics")
QUARANTINE_SHOWN = 20  # skipped events listed per read model by `project status`


def register(root: click.Group) -> None:
    for each in (_trace, _lineage, _audit, _project):
        root.add_command(each)


# -- commands ------------------------------------------------------------------------------------


@command("trace", "a run as a tree of spans (LineageIR)", "RUN: run id, or a unique prefix of one.")
@click.argument("run", metavar="RUN")
@click.option("--format", "shape", type=click.Choice(("lineageir", "nested")),
              help="the JSON shape (needs --json): LineageIR graph (default) or nested")
@json_option
def _trace(cli: Invocation, run: str, shape: str | None) -> int:
    if shape is not None and not cli.json:  # the tree for people has one shape
        raise click.UsageError(f"--format {shape} needs --json", click.get_current_context())
    with reader(cli) as tracker:
        catch_up(tracker, cli.console)
        run_id = tracker.resolve(run, "run")
        # Written as the spans are read: a long run's trace is never all in memory.
        with tracker.views.trace_stream(str(run_id), shape=shape or "lineageir") as graph:
            if cli.json:
                print_json(graph)
            else:
                cli.console.print(cli_graph.trace_tree(graph))
    return 0


@command("lineage", "ancestors / descendants of an artifact or run",
         "ID: artifact or run id (or a unique prefix).")
@click.argument("node", metavar="ID")
@click.option("--up", is_flag=True, help="ancestors: what it was made from (the default)")
@click.option("--down", is_flag=True, help="descendants: what was made from it")
@click.option("--both", is_flag=True, help="ancestors and descendants")
@click.option("--depth", type=click.IntRange(min=0), default=20, metavar="N",
              help="edges to follow (default 20)")
@click.option("--format", "shape", type=click.Choice(("tree", "json", "dot", "mermaid")),
              default="tree")
@json_option
def _lineage(cli: Invocation, node: str, up: bool, down: bool, both: bool, depth: int,
             shape: str) -> int:
    exclusive({"--up": up, "--down": down, "--both": both})
    direction = "down" if down else "both" if both else "up"
    with reader(cli) as tracker:
        catch_up(tracker, cli.console)
        node_id = tracker.resolve(node, "any")
        graph = tracker.lineage(node_id, direction=direction, depth=depth)
    console = cli.console
    if shape == "json" or cli.json:
        print_json(graph)
    elif shape == "dot":
        console.print(cli_graph.dot(graph), markup=False, highlight=False, soft_wrap=True)
    elif shape == "mermaid":
        console.print(cli_graph.mermaid(graph), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(cli_graph.lineage_tree(graph))
    return 0


@command("audit", "who did what and when")
@click.option("--subject", metavar="ID", help="a run or artifact id (or prefix)")
@click.option("--actor", help="only events written by this actor")
@click.option("--kind", help="only events whose kind contains this (e.g. checkpoint)")
@click.option("--since", metavar="TIME", help="recorded at or after (ISO 8601)")
@click.option("--until", metavar="TIME", help="recorded at or before (ISO 8601)")
@click.option("--steps", is_flag=True, help="include step events and heartbeats (a page "
              "never cuts a block of steps, so it may run over --limit)")
@click.option("--after", type=click.IntRange(min=0), default=0, metavar="POSITION",
              help="page: start after this log position")
@click.option("--limit", type=click.IntRange(min=1), default=100)
@json_option
def _audit(cli: Invocation, subject: str | None, actor: str | None, kind: str | None,
           since: str | None, until: str | None, steps: bool, after: int, limit: int) -> int:
    with reader(cli) as tracker:
        catch_up(tracker, cli.console)
        subject_id = None
        if subject is not None:
            subject_id = tracker.resolve(subject, "any")
        rows = tracker.audit(subject=subject_id, actor=actor, kind=kind, since=since,
                             until=until, include_steps=steps, after=after, limit=limit)
    if cli.json:
        print_json(rows)
    elif rows:
        cli.console.print(cli_graph.audit_table(rows))
        if len(rows) >= limit:  # a page never cuts a block of steps: it may run over --limit
            cli.console.print(f"more: --after {rows[-1]['position']}")
    else:
        cli.console.print("no events")
    return 0


@group("project", "read-model projections", "Without a subcommand: status.")
def _project(cli: Invocation) -> int:
    return _show_status(cli)


@command("status", "positions and lag")
@json_option
def _project_status(cli: Invocation) -> int:
    return _show_status(cli)


def _show_status(cli: Invocation) -> int:
    with reader(cli) as tracker:
        runner = tracker.views.runner
        statuses, skipped = runner.status(), runner.quarantined()
    if cli.json:
        print_json([{"name": s.name, "position": s.position, "head": s.head, "lag": s.lag,
                     "quarantined": s.quarantined,
                     "quarantine": [_quarantine_entry(row) for row in skipped
                                    if row["read_model"] == s.name]}
                    for s in statuses])
        return 0
    table = Table(title="read models", box=None)
    for column in ("read model", "position", "head", "lag", "quarantined"):
        table.add_column(column, justify="left" if column == "read model" else "right")
    for s in statuses:
        table.add_row(s.name, str(s.position), str(s.head), str(s.lag), str(s.quarantined))
    cli.console.print(table)
    for s in statuses:
        mine = [row for row in skipped if row["read_model"] == s.name]
        for row in mine[:QUARANTINE_SHOWN]:
            cli.console.print(f"{s.name}: skipped position {row['position']} ({row['topic']}): "
                              f"{row['reason']}", highlight=False, markup=False, soft_wrap=True)
        if len(mine) > QUARANTINE_SHOWN:
            cli.console.print(f"{s.name}: ... and {len(mine) - QUARANTINE_SHOWN} more (--json "
                              "lists them all)", highlight=False)
    return 0


def _quarantine_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("position", "event_id", "topic", "originator_id",
                                      "originator_version", "reason", "quarantined_at")}


@command("rebuild", "rebuild read models from 0",
         f"NAME: read models to rebuild (default: all): {', '.join(READ_MODELS)}.")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def _project_rebuild(cli: Invocation, names: tuple[str, ...]) -> int:
    console = cli.console
    with reader(cli) as tracker:
        _refuse_read_only(tracker, "rebuilt")
        runner = tracker.views.runner
        with _progress(console) as progress:
            task = progress.add_task("rebuilding", total=tracker.store.max_position() or 1)
            applied = runner.rebuild(list(names), progress=lambda at, head: progress.update(
                task, completed=at, total=head))
    console.print(f"rebuilt {', '.join(names) or 'all read models'}: {applied} events")
    return 0


@command("follow", "project continuously")
@click.option("--poll", type=float, default=0.5, metavar="SECONDS")
def _project_follow(cli: Invocation, poll: float) -> int:
    stop = threading.Event()
    with reader(cli) as tracker:
        _refuse_read_only(tracker, "followed")
        runner = tracker.views.runner
        cli.console.print(f"following {tracker.location} (Ctrl-C to stop)")
        def report(applied: int) -> None:
            if applied:
                cli.console.print(f"projected {applied} events; lag "
                                  f"{max(s.lag for s in runner.status())}")

        try:
            runner.follow(stop, poll_s=poll, on_batch=report)
        except KeyboardInterrupt:
            stop.set()
    return 0


def _refuse_read_only(tracker: Tracker, what: str) -> None:
    """Read models of a read-only store cannot be written: refuse before building any."""
    if tracker.store.read_only:
        raise ReadOnlyStoreError(tracker.location, f"its read models cannot be {what}")


for _action in (_project_status, _project_rebuild, _project_follow):
    _project.add_command(_action)


def catch_up(tracker: Tracker, console: Console, *, threshold: int = 20_000) -> None:
    """Bring the read models to the head before a query, with a progress bar (on stderr) when
    the backlog is long enough for someone to wonder what is happening."""
    if not tracker.views.catches_up():  # current read models of a read-only store
        return
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

