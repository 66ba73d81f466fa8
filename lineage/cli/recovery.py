"""CLI commands for recovery: ``recover`` (one run) and ``monitor`` (watch and recover).

    lineage recover RUN [--strategy latest|best|CHECKPOINT] [--no-optimizer]
                        [--allow-weights-only] [--attempts N] [--backoff B] [--initial-delay S]
                        [--max-delay S] [--exec CMD] [--reason TEXT] [--json]
    lineage monitor [--interval S] [--stale-after S] [--once | --polls N]
                    [--source local|tinker ...] [--tinker-base-url URL] [same options]

Without ``--exec`` a recovery records the lineage only: the new run is created ``pending`` for
your trainer to pick up (``tracker.run_handle(NEW_RUN)``) from the checkpoint printed. With
``--exec CMD`` the command is run (no shell) to launch the trainer, with ``LINEAGE_RESUME_RUN``,
``LINEAGE_RESUME_FROM_RUN``, ``LINEAGE_RESUME_CHECKPOINT``, ``LINEAGE_RESUME_URI``,
``LINEAGE_RESUME_PATH`` (local files), ``LINEAGE_RESUME_STEP``, ``LINEAGE_RESUME_OPTIMIZER``
(1/0) and ``LINEAGE_DATABASE_URL`` in its environment; a non-zero exit fails the attempt
(exit 75, EX_TEMPFAIL, is retryable, as is a timeout).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

import click
from rich.text import Text

from lineage.api import Tracker
from lineage.application.monitor import LocalRunStatusSource, MonitorAction, PollFailure, RecoveryMonitor
from lineage.application.policies import BACKOFFS, RetryPolicy
from lineage.application.recovery_result import NOT_RECOVERED, RecoveryResult
from lineage.application.run_handle import RunHandle
from lineage.application.views import ArtifactView
from lineage.cli.base import (
    Handler,
    Invocation,
    Seconds,
    command,
    exclusive,
    json_option,
    print_json,
    print_json_line,
)
from lineage.errors import LineageError

EX_TEMPFAIL = 75


def register(root: click.Group) -> None:
    root.add_command(_recover)
    root.add_command(_monitor)


# -- options shared by recover and monitor -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecoveryOptions:
    """The options ``recover`` and ``monitor`` share, as given on the command line."""

    strategy: str
    no_optimizer: bool
    allow_weights_only: bool
    attempts: int
    backoff: str
    initial_delay: float
    max_delay: float
    command: str | None
    exec_timeout: float

    def for_tracker(self, tracker: Tracker) -> dict[str, Any]:
        """Keyword arguments for ``Tracker.recover`` and ``RecoveryMonitor``."""
        strategy: Any = self.strategy
        if strategy not in ("latest", "best"):
            strategy = tracker.resolve(strategy, "checkpoint")
        retry = RetryPolicy(max_attempts=self.attempts, backoff=self.backoff,
                            initial_delay_s=self.initial_delay, max_delay_s=self.max_delay)
        resume = None
        if self.command:
            resume = CommandResume(self.command, tracker.settings.database_url, self.exec_timeout)
        return {"strategy": strategy, "restore_optimizer": not self.no_optimizer,
                "allow_weights_only": self.allow_weights_only, "retry": retry, "resume": resume}


_RECOVERY_OPTIONS = (
    click.option("--strategy", default="latest", metavar="latest|best|CHECKPOINT",
                 help="which checkpoint to resume from (default: latest)"),
    click.option("--no-optimizer", is_flag=True,
                 help="resume weights only (do not require optimizer state)"),
    click.option("--allow-weights-only", is_flag=True,
                 help="fall back to a checkpoint without optimizer state"),
    click.option("--attempts", type=click.IntRange(min=1), default=3, metavar="N",
                 help="attempts in all (default: 3)"),
    click.option("--backoff", type=click.Choice(BACKOFFS), default="exponential"),
    click.option("--initial-delay", type=Seconds(), default=5.0, metavar="S",
                 help="wait before the second attempt (default: 5)"),
    click.option("--max-delay", type=Seconds(), default=60.0, metavar="S",
                 help="longest wait between attempts (default: 60)"),
    click.option("--exec", "command", metavar="CMD",
                 help="launch the resumed trainer with this command; it gets LINEAGE_RESUME_RUN, "
                      "LINEAGE_RESUME_PATH, LINEAGE_RESUME_STEP... in its environment "
                      "(exit 75: try again)"),
    click.option("--exec-timeout", type=Seconds(), default=600.0, metavar="S",
                 help="longest the --exec command may run (default: 600)"),
)
_RECOVERY_NAMES = tuple(field.name for field in dataclasses.fields(RecoveryOptions))


def recovery_options(handler: Handler) -> Handler:
    """Add the shared recovery options; the handler gets them as ``recovery: RecoveryOptions``."""
    @functools.wraps(handler)
    def bundled(cli: Invocation, **options: Any) -> int:
        recovery = RecoveryOptions(**{name: options.pop(name) for name in _RECOVERY_NAMES})
        return handler(cli, recovery=recovery, **options)

    for option in reversed(_RECOVERY_OPTIONS):
        bundled = option(bundled)
    return bundled


# -- commands ------------------------------------------------------------------------------------


@command("recover", "recover a failed or corrupted run from a checkpoint, as a new run",
         "RUN: run id, or a unique prefix of one. Exit 0 when recovered, 1 otherwise.")
@click.argument("run", metavar="RUN")
@click.option("--reason", metavar="TEXT",
              help="record this failure first (for a run with none recorded)")
@recovery_options
@json_option
def _recover(cli: Invocation, run: str, reason: str | None, recovery: RecoveryOptions) -> int:
    with Tracker(cli.db, create=False) as tracker:
        run_id = tracker.resolve(run, "run")
        options = recovery.for_tracker(tracker)
        if reason:
            view = tracker.run(run_id)
            if view.failures == 0 and view.status not in ("failed", *NOT_RECOVERED):
                tracker.run_handle(run_id).record_failure("OperatorReported", reason,
                                                          signal="operator",
                                                          retryable=True).wait()
        result = tracker.recover(run_id, **options)
    if cli.json:
        print_json(result_json(result))
    else:
        cli.console.print(result_text(result))
    return 0 if result.recovered else 1


@command("monitor", "watch runs; recover failed, corrupted and crashed ones")
@click.option("--interval", type=Seconds(), default=30.0, metavar="S",
              help="seconds between polls (default: 30)")
@click.option("--stale-after", type=Seconds(), default=300.0, metavar="S",
              help="a run with no step, event or heartbeat for this long, and no finish event, "
                   "has crashed (default: 300)")
@click.option("--once", is_flag=True, help="poll once and exit")
@click.option("--polls", type=click.IntRange(min=1), metavar="N", help="poll N times and exit")
@click.option("--source", "sources", type=click.Choice(("local", "tinker")), multiple=True,
              help="where to look: this store (local, the default) and/or the Tinker service "
                   "(tinker: TINKER_API_KEY, TINKER_BASE_URL); repeat for both")
@click.option("--tinker-base-url", metavar="URL",
              help="the Tinker service (default: TINKER_BASE_URL, else the SDK's)")
@recovery_options
@json_option
def _monitor(cli: Invocation, interval: float, stale_after: float, once: bool, polls: int | None,
             sources: tuple[str, ...], tinker_base_url: str | None,
             recovery: RecoveryOptions) -> int:
    exclusive({"--once": once, "--polls": polls})
    with Tracker(cli.db, create=False) as tracker:
        watched: list[Any] = []
        if "local" in sources or not sources:
            watched.append(LocalRunStatusSource(tracker, stale_after_s=stale_after))
        if "tinker" in sources:
            watched.append(_tinker_source(tracker, tinker_base_url))
        monitor = RecoveryMonitor(tracker, watched, interval_s=interval,
                                  **recovery.for_tracker(tracker))
        monitor.run(max_polls=1 if once else polls, report=_reporter(cli))
    return 0


def _tinker_source(tracker: Tracker, base_url: str | None) -> Any:
    """The Tinker service as a status source (needs the ``lineage[tinker]`` extra)."""
    try:
        from lineage.adapters.tinker.status_source import TinkerRunStatusSource
    except ImportError as error:
        raise click.UsageError(f"--source tinker needs the tinker extra: pip install "
                               f"'lineage[tinker]' ({error})") from None
    try:
        return TinkerRunStatusSource(tracker, base_url=base_url)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _reporter(cli: Invocation) -> Callable[[list[MonitorAction], list[PollFailure]], None]:
    """Print each poll's actions and errors; with ``--json`` one line per poll, also when it
    found nothing: ``{"actions": [...], "errors": [...]}``."""
    def report(actions: list[MonitorAction], errors: list[PollFailure]) -> None:
        if cli.json:
            print_json_line({"actions": [action_json(action) for action in actions],
                             "errors": errors})
            return
        for action in actions:
            cli.console.print(action_text(action))
        for error in errors:
            cli.console.print(Text(f"poll of {error.source} failed: {error.error_type}: "
                                   f"{error.message}", style="red"))

    return report


# -- the resume command --------------------------------------------------------------------------


class ResumeCommandError(LineageError):
    """The ``--exec`` command failed; exit 75 (EX_TEMPFAIL) is retryable."""

    def __init__(self, command: str, code: int) -> None:
        self.code = code
        self.retry_kind = "backend_unavailable" if code == EX_TEMPFAIL else None
        super().__init__(f"{command!r} exited with status {code}")


class CommandResume:
    """A resume function that launches a command with the resume point in its environment."""

    def __init__(self, command: str, database_url: str, timeout_s: float) -> None:
        self.argv = shlex.split(command)
        self.command = command
        self.database_url = database_url
        self.timeout_s = timeout_s

    def environment(self, checkpoint: ArtifactView, new_run: RunHandle) -> dict[str, str]:
        parsed = urlparse(checkpoint.uri)
        env = {
            "LINEAGE_DATABASE_URL": self.database_url,
            "LINEAGE_RESUME_RUN": str(new_run.id),
            "LINEAGE_RESUME_CHECKPOINT": str(checkpoint.id),
            "LINEAGE_RESUME_URI": checkpoint.uri,
            "LINEAGE_RESUME_PATH": unquote(parsed.path) if parsed.scheme == "file" else "",
            "LINEAGE_RESUME_STEP": str(checkpoint.step or 0),
            "LINEAGE_RESUME_OPTIMIZER": "1" if checkpoint.includes_optimizer else "0",
        }
        if checkpoint.run_id is not None:
            env["LINEAGE_RESUME_FROM_RUN"] = str(checkpoint.run_id)
        return env

    def __call__(self, checkpoint: ArtifactView, new_run: RunHandle) -> None:
        env = {**os.environ, **self.environment(checkpoint, new_run)}
        try:
            done = subprocess.run(self.argv, env=env, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.command!r} ran longer than {self.timeout_s:g}s") from None
        if done.returncode != 0:
            raise ResumeCommandError(self.command, done.returncode)


# -- output --------------------------------------------------------------------------------------


# What to do next, in terms of this command line (RecoveryResult.hint speaks Python).
CLI_HINTS = {"no_failure": "record one first: lineage recover RUN --reason TEXT"}


def result_json(result: RecoveryResult) -> dict[str, Any]:
    return {"status": result.status, "run_id": result.run_id, "message": result.message,
            "hint": CLI_HINTS.get(result.status),
            "new_run_id": None if result.new_run is None else result.new_run.id,
            "checkpoint": result.checkpoint, "optimizer_restored": result.optimizer_restored,
            "lost_steps": result.lost_steps, "attempts": list(result.attempts),
            "rejected": list(result.rejected)}


def result_text(result: RecoveryResult) -> Text:
    style = "green" if result.recovered else "red"
    text = Text.assemble((f"{result.status}: ", f"bold {style}"), f"run {result.run_id}: ",
                         result.message)
    if result.status in CLI_HINTS:
        text.append(f" ({CLI_HINTS[result.status]})")
    for rejection in result.rejected:
        text.append(f"\n  rejected step {rejection.step}: {rejection.reason}", style="yellow")
    if result.lost_steps is not None:
        lost = result.lost_steps
        text.append(f"\n  steps {lost.first_step}-{lost.last_step} lost ({lost.count})")
    if result.checkpoint is not None:
        text.append(f"\n  checkpoint {result.checkpoint.id} {result.checkpoint.uri}")
    return text


def action_json(action: MonitorAction) -> dict[str, Any]:
    return {"signal": action.signal, "error": action.error,
            "result": None if action.result is None else result_json(action.result)}


def action_text(action: MonitorAction) -> Text:
    head = Text(f"{action.signal.signal} on run {action.signal.run_id}: ")
    if action.result is None:
        return head.append(f"error {action.error}", style="red")
    return head.append_text(result_text(action.result))
