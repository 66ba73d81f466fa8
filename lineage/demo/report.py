"""The summary ``lineage demo`` prints: the runs, the failure and recovery, retention, the files
and what to try next. Pure formatting of a ``DemoResult`` (rich renderables)."""

from __future__ import annotations

import shlex
from typing import Any

from lineage.application.views import ArtifactView
from lineage.demo.scenario import KEEP_LAST, DemoResult, local_path


def report(console: Any, result: DemoResult, database_url: str | None) -> None:
    """Print what was recorded and where, and what to try next."""
    from rich.text import Text

    from lineage.cli.format import table

    failed, resumed = result.failed_run, result.resumed_run
    console.print()
    console.print(Text.assemble(("Recorded into ", "bold"), (result.database, "cyan")),
                  soft_wrap=True)
    runs = table("Runs")
    runs.add_column("run", no_wrap=True, min_width=36)
    for column in ("status", "steps", "ckpts", "evals"):
        runs.add_column(column, overflow="fold")
    for view in (failed, resumed):
        first = view.start_step + 1 if view.steps else None
        runs.add_row(str(view.id), view.job_status, f"{first}-{view.last_step}",
                     str(len(view.checkpoints)), str(view.evaluations))
    console.print(runs)
    console.print()
    console.print(Text.assemble(
        f"{failed.id.hex[:8]}: the backend flagged the session corrupted at step "
        f"{result.failure_step}; recovered from checkpoint step "
        f"{result.recovery_checkpoint.step} as {resumed.id.hex[:8]}, which finished with ",
        (", ".join(f"{k} {v:.4f}" for k, v in result.final_eval.items()), "bold"), "."))
    console.print(_lost_steps(result))
    console.print(_retention(result))
    console.print()
    console.print(_files_table(result))
    console.print()
    console.print(Text("Try next:", style="bold"))
    for command, why in _next_commands(result, database_url):
        console.print(Text(f"  # {why}", style="dim"))
        console.print(Text(f"  {command}", style="green"), soft_wrap=True)


def _files_table(result: DemoResult) -> Any:
    from lineage.cli.format import table

    files = table(f"Files under {result.directory}")
    files.add_column("type", no_wrap=True)
    files.add_column("path", overflow="fold")
    files.add_column("bytes", justify="right", no_wrap=True)
    files.add_column("sha256", no_wrap=True)
    files.add_column("state", overflow="fold")
    states = [None, None, None, *result.checkpoint_states]
    for ref, state in zip([result.dataset, result.val_dataset, result.base_model,
                           *result.checkpoints], states, strict=True):
        path = local_path(ref.uri)
        shown = path.relative_to(result.directory) if path.is_relative_to(result.directory) else path
        files.add_row(ref.type, str(shown), f"{ref.size:,}", (ref.checksum or "")[:8],
                      "" if state is None else checkpoint_state(state))
    return files


def checkpoint_state(view: ArtifactView) -> str:
    """``live (best, resumed from)`` or ``retired, file deleted``."""
    if view.status != "live":
        deleted = {"deleted": "file deleted", "already_gone": "file was gone"}
        return f"{view.status}, {deleted.get(view.deletion or '', 'file kept')}"
    kept = sorted({key.split(":")[0] if not key.endswith(":best") else "best"
                   for key in view.pins})
    names = {"alias": "protected alias", "resumed": "resumed from", "derived": "derived from"}
    return "live" + (f" ({', '.join(names.get(k, k) for k in kept)})" if kept else "")


def _retention(result: DemoResult) -> Any:
    from rich.text import Text

    retired = [view for view in result.checkpoint_states if view.status == "retired"]
    deleted = [view for view in retired if view.deletion == "deleted"]
    return Text.assemble(
        ("Retention: ", "bold"), f"keep_last={KEEP_LAST} retired {len(retired)} of "
        f"{len(result.checkpoint_states)} checkpoints (steps "
        f"{', '.join(str(view.step) for view in retired) or 'none'}) and deleted "
        f"{len(deleted)} file(s); the best by val_loss and the checkpoint resumed from are kept.")


def _lost_steps(result: DemoResult) -> Any:
    from rich.text import Text

    lost, checkpoint = result.lost_steps, result.recovery_checkpoint
    if not lost:
        return Text("No steps were lost.")
    return Text.assemble(
        ("Lost steps: ", "bold"), f"{lost[0]}-{lost[-1]} ({len(lost)} steps) were logged by "
        f"run {result.failed_run.id.hex[:8]} after checkpoint step {checkpoint.step} "
        f"(sha256 {(checkpoint.checksum or '')[:8]}) and re-done by run "
        f"{result.resumed_run.id.hex[:8]}.")


def _next_commands(result: DemoResult, database_url: str | None) -> list[tuple[str, str]]:
    prefix = "lineage" if database_url is None else f"lineage --db {shlex.quote(database_url)}"
    return [
        (f"{prefix} runs", "both runs"),
        (f"{prefix} runs show {result.failed_run.id}", "the failure and the recovery"),
        (f"{prefix} runs show {result.resumed_run.id}", "the resumed run"),
        (f"{prefix} artifacts --type checkpoint", "the checkpoint files (retired ones too)"),
        (f"{prefix} runs --status superseded", "job status: the run the recovery replaced"),
        (f"{prefix} trace {result.failed_run.id}", "the failed run as a trace, with the lost steps"),
        (f"{prefix} lineage {result.checkpoints[-1].id} --up", "where the last checkpoint came from"),
        (f"{prefix} audit --kind recovery", "who did what during the recovery"),
        (f"{prefix} export otlp --dry-run --run {result.resumed_run.id}",
         "the resumed run as OTLP spans (set OTEL_EXPORTER_OTLP_ENDPOINT to send them)"),
    ]
