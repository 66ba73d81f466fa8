"""CLI command over a run's metric history: ``metrics``.

    lineage metrics RUN NAME [--buckets N] [--json]

Every point: ``step<TAB>value`` lines (``--json``: one compact line ``{"run_id", "name",
"steps": [...], "values": [...]}``, non-finite values as the strings "NaN", "Infinity",
"-Infinity"); a run of millions of steps streams out without a table. ``--buckets N``: the
metric downsampled for a plot (``Tracker.metric_history(..., buckets=N)``): a table, or with
``--json`` a list of ``{step_from, step_to, count, min, max, last}``.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from lineage.application.metric_history import MetricHistory
from lineage.application.validation import MAX_BUCKETS
from lineage.cli.base import Invocation, command, json_option, print_json, print_json_line, reader
from lineage.cli.query import catch_up

_LINES = 10_000  # points written per chunk


def register(root: click.Group) -> None:
    root.add_command(_metrics)


@command("metrics", "a run's metric history: every point, or --buckets N for a plot",
         "RUN: run id, or a unique prefix of one. NAME: the metric's name.")
@click.argument("run", metavar="RUN")
@click.argument("name", metavar="NAME")
@click.option("--buckets", type=click.IntRange(min=1, max=MAX_BUCKETS), metavar="N",
              help=f"at most N buckets of consecutive points, each with its step range, count, "
                   f"min, max (NaN skipped) and last value (N: 1 to {MAX_BUCKETS})")
@json_option
def _metrics(cli: Invocation, run: str, name: str, buckets: int | None) -> int:
    with reader(cli) as tracker:
        catch_up(tracker, cli.console)
        run_id = tracker.resolve(run, "run")
        if buckets is None:
            _print_points(cli, str(run_id), name, tracker.metric_history(run_id, name))
            return 0
        found = tracker.metric_history(run_id, name, buckets=buckets)
    if cli.json:
        print_json(found)
    elif found:
        cli.console.print(_buckets_table(found))
    else:
        cli.console.print(f"no values of {name!r}", highlight=False)
    return 0


def _print_points(cli: Invocation, run_id: str, name: str, history: MetricHistory) -> None:
    if cli.json:
        print_json_line({"run_id": run_id, "name": name, "steps": list(history.steps),
                         "values": list(history.values)})
        return
    if not history:
        cli.console.print(f"no values of {name!r}", highlight=False)
        return
    for start in range(0, len(history), _LINES):
        end = start + _LINES
        sys.stdout.write("".join(f"{step}\t{value!r}\n" for step, value in
                                 zip(history.steps[start:end], history.values[start:end],
                                     strict=True)))
    sys.stdout.flush()


def _buckets_table(found: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("step from", "step to", "count", "min", "max", "last"):
        table.add_column(column, justify="right")
    for bucket in found:
        table.add_row(str(bucket["step_from"]), str(bucket["step_to"]), str(bucket["count"]),
                      *(_number(bucket[key]) for key in ("min", "max", "last")))
    return table


def _number(value: Any) -> str:
    if value is None:  # every value of the bucket was NaN
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.6g}"
