"""CLI commands for recovery: ``recover`` (one run) and ``monitor`` (watch and recover).

    lineage recover RUN [--strategy latest|best|CHECKPOINT] [--no-optimizer]
                        [--allow-weights-only] [--attempts N] [--backoff B] [--initial-delay S]
                        [--max-delay S] [--exec CMD] [--reason TEXT] [--json]
    lineage monitor [--interval S] [--stale-after S] [--once | --polls N] [same options]

Without ``--exec`` a recovery records the lineage only: the new run is created ``pending`` for
your trainer to pick up (``tracker.run_handle(NEW_RUN)``) from the checkpoint printed. With
``--exec CMD`` the command is run (no shell) to launch the trainer, with ``LINEAGE_RESUME_RUN``,
``LINEAGE_RESUME_FROM_RUN``, ``LINEAGE_RESUME_CHECKPOINT``, ``LINEAGE_RESUME_URI``,
``LINEAGE_RESUME_PATH`` (local files), ``LINEAGE_RESUME_STEP``, ``LINEAGE_RESUME_OPTIMIZER``
(1/0) and ``LINEAGE_DATABASE_URL`` in its environment; a non-zero exit fails the attempt
(exit 75, EX_TEMPFAIL, is retryable, as is a timeout).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from typing import Any
from urllib.parse import unquote, urlparse

from rich.console import Console
from rich.text import Text

from lineage.api import Tracker
from lineage.application.monitor import LocalRunStatusSource, MonitorAction, PollError, RecoveryMonitor
from lineage.application.policies import BACKOFFS, RetryPolicy
from lineage.application.recovery import RecoveryResult
from lineage.application.run_handle import RunHandle
from lineage.application.views import ArtifactView
from lineage.cli.main import add_command, at_least, json_option, print_json, resolve, wants_json
from lineage.errors import LineageError

EX_TEMPFAIL = 75


def register(commands: Any) -> None:
    recover = add_command(commands, "recover", _recover,
                          "recover a failed or corrupted run from a checkpoint, as a new run")
    recover.add_argument("run", metavar="RUN", help="run id, or a unique prefix of one")
    recover.add_argument("--reason", metavar="TEXT",
                         help="record this failure first (for a run with none recorded)")
    _recovery_options(recover)
    json_option(recover)

    monitor = add_command(commands, "monitor", _monitor,
                          "watch runs; recover failed, corrupted and crashed ones")
    monitor.add_argument("--interval", type=seconds, default=30.0, metavar="S",
                         help="seconds between polls (default: 30)")
    monitor.add_argument("--stale-after", type=seconds, default=300.0, metavar="S",
                         help="a run with no step, event or heartbeat for this long, and no "
                              "finish event, has crashed (default: 300)")
    polls = monitor.add_mutually_exclusive_group()
    polls.add_argument("--once", dest="polls", action="store_const", const=1,
                       help="poll once and exit")
    polls.add_argument("--polls", type=at_least(1), metavar="N", help="poll N times and exit")
    _recovery_options(monitor)
    json_option(monitor)


def _recovery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", default="latest", metavar="latest|best|CHECKPOINT",
                        help="which checkpoint to resume from (default: latest)")
    parser.add_argument("--no-optimizer", dest="restore_optimizer", action="store_false",
                        help="resume weights only (do not require optimizer state)")
    parser.add_argument("--allow-weights-only", action="store_true",
                        help="fall back to a checkpoint without optimizer state")
    parser.add_argument("--attempts", type=at_least(1), default=3, metavar="N",
                        help="attempts in all (default: 3)")
    parser.add_argument("--backoff", choices=BACKOFFS, default="exponential")
    parser.add_argument("--initial-delay", type=seconds, default=5.0, metavar="S",
                        help="wait before the second attempt (default: 5)")
    parser.add_argument("--max-delay", type=seconds, default=60.0, metavar="S",
                        help="longest wait between attempts (default: 60)")
    parser.add_argument("--exec", dest="command", metavar="CMD",
                        help="launch the resumed trainer with this command; it gets "
                             "LINEAGE_RESUME_RUN, LINEAGE_RESUME_PATH, LINEAGE_RESUME_STEP... "
                             "in its environment (exit 75: try again)")
    parser.add_argument("--exec-timeout", type=seconds, default=600.0, metavar="S",
                        help="longest the --exec command may run (default: 600)")


def seconds(text: str) -> float:
    """A finite, non-negative number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _options(args: argparse.Namespace, tracker: Tracker) -> dict[str, Any]:
    strategy = args.strategy
    if strategy not in ("latest", "best"):
        strategy = resolve(strategy, lambda: (v.id for v in tracker.artifacts(type="checkpoint")),
                           "artifact")
    retry = RetryPolicy(max_attempts=args.attempts, backoff=args.backoff,
                        initial_delay_s=args.initial_delay, max_delay_s=args.max_delay)
    resume = None
    if args.command:
        resume = CommandResume(args.command, tracker.settings.database_url, args.exec_timeout)
    return {"strategy": strategy, "restore_optimizer": args.restore_optimizer,
            "allow_weights_only": args.allow_weights_only, "retry": retry, "resume": resume}


# -- handlers ------------------------------------------------------------------------------------


def _recover(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        run_id = resolve(args.run, lambda: (v.id for v in tracker.runs()), "run")
        options = _options(args, tracker)
        if args.reason:
            view = tracker.run(run_id)
            if view.failures == 0 and view.status != "failed":
                tracker.run_handle(run_id).record_failure("OperatorReported", args.reason,
                                                          signal="operator",
                                                          retryable=True).wait()
        result = tracker.recover(run_id, **options)
    if wants_json(args):
        print_json(result_json(result))
    else:
        console.print(result_text(result))
    return 0 if result.recovered else 1


def _monitor(args: argparse.Namespace, console: Console) -> int:
    with Tracker(args.db, create=False) as tracker:
        source = LocalRunStatusSource(tracker, stale_after_s=args.stale_after)
        monitor = RecoveryMonitor(tracker, [source], interval_s=args.interval,
                                  **_options(args, tracker))

        def report(actions: list[MonitorAction], errors: list[PollError]) -> None:
            for action in actions:
                if wants_json(args):
                    print_json(action_json(action))
                else:
                    console.print(action_text(action))
            for error in errors:
                if wants_json(args):
                    print_json({"poll_error": error})
                else:
                    console.print(Text(f"poll of {error.source} failed: {error.error_type}: "
                                       f"{error.message}", style="red"))

        monitor.run(max_polls=args.polls, report=report)
    return 0


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


def result_json(result: RecoveryResult) -> dict[str, Any]:
    return {"status": result.status, "run_id": result.run_id, "message": result.message,
            "new_run_id": None if result.new_run is None else result.new_run.id,
            "checkpoint": result.checkpoint, "optimizer_restored": result.optimizer_restored,
            "lost_steps": result.lost_steps, "attempts": list(result.attempts),
            "rejected": list(result.rejected)}


def result_text(result: RecoveryResult) -> Text:
    style = "green" if result.recovered else "red"
    text = Text.assemble((f"{result.status}: ", f"bold {style}"), f"run {result.run_id}: ",
                         result.message)
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
