"""CLI commands for the Tinker integration (the ``lineage[tinker]`` extra):

    lineage import tinker-cookbook LOG_PATH [--follow] [--interval S] [--polls N] [--name NAME]

Imports a tinker-cookbook log directory, local or a cloud uri
(``lineage.adapters.tinker.cookbook``): one run per cookbook process, resumes linked,
checkpoints, steps. Importing again changes nothing; ``--follow`` imports what a live directory
appends, every ``--interval`` seconds, reading only the bytes appended since the last pass,
until interrupted (or ``--polls`` passes). The monitor's ``--source tinker`` lives with ``monitor``.
"""

from __future__ import annotations

import time

import click

from lineage.api import Tracker
from lineage.cli.base import Invocation, Seconds, command, group, json_option, print_json_line
from lineage.errors import ValidationError


def register(root: click.Group) -> None:
    root.add_command(_import)


@group("import", "import runs recorded by other tools", "Subcommand: tinker-cookbook.")
def _import(cli: Invocation) -> int:
    click.echo(click.get_current_context().get_help())
    return 0


@command("tinker-cookbook", "import a tinker-cookbook log directory (idempotent)",
         "LOG_PATH: the cookbook's log_path (config.json, metrics.jsonl, checkpoints.jsonl, "
         "timing_spans.jsonl): a directory, or an s3://, gs://, az:// uri (fsspec).")
@click.argument("log_path", metavar="LOG_PATH")
@click.option("--follow", is_flag=True, help="keep importing what the directory appends")
@click.option("--interval", type=Seconds(), default=5.0, metavar="S",
              help="seconds between passes with --follow (default: 5)")
@click.option("--polls", type=click.IntRange(min=1), metavar="N",
              help="with --follow: stop after N passes")
@click.option("--name", metavar="NAME", help="the runs' name (default: cookbook DIRNAME)")
@json_option
def _cookbook(cli: Invocation, log_path: str, follow: bool, interval: float,
              polls: int | None, name: str | None) -> int:
    try:
        from lineage.adapters.tinker.cookbook import CookbookImporter
    except ImportError as error:  # pragma: no cover - the extra is installed with the tests
        raise click.UsageError(f"needs the tinker extra: pip install 'lineage[tinker]' "
                               f"({error})") from None
    with Tracker(cli.db) as tracker:
        try:
            importer = CookbookImporter(tracker, log_path, name=name)
        except ValidationError as error:  # a usage error: exit 2, like click's own checks
            raise click.BadParameter(str(error), param_hint="LOG_PATH") from None
        passes = 0
        while True:
            result = importer.import_once()
            tracker.flush()
            passes += 1
            if cli.json:
                print_json_line({"runs": result.runs, "steps": result.steps,
                                 "checkpoints": result.checkpoints})
            else:
                cli.console.print(f"{log_path}: {len(result.runs)} run(s), {result.steps} "
                                  f"step record(s), {result.checkpoints} checkpoint record(s)",
                                  highlight=False)
            if not follow or (polls is not None and passes >= polls):
                return 0
            time.sleep(interval)


_import.add_command(_cookbook)
