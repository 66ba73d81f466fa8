"""CPU time of each named thread of this process (Linux: ``/proc/self/task/N/schedstat``), so
``training_overhead.py`` can say where the tracked runs' extra process CPU goes: the training
thread, the tracker's writer, the checkpoint saves, retention, the heartbeat."""

from __future__ import annotations

import statistics
import threading
from pathlib import Path

from common import Report

TASKS = Path("/proc/self/task")
PREFIX = "thread:"  # a run's result key for a thread's CPU seconds
PER_SAVE = ("lineage-checkpoint-saves", "lineage-retention")  # their work comes with each save


def thread_cpu() -> dict[str, float]:
    """Seconds of CPU of each live thread, by its Python name (``{}`` where /proc is not)."""
    names = {str(thread.native_id): thread.name for thread in threading.enumerate()}
    seconds: dict[str, float] = {}
    for task in TASKS.glob("*") if TASKS.is_dir() else ():
        try:
            nanoseconds = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
        name = names.get(task.name, "other")
        seconds[name] = seconds.get(name, 0.0) + nanoseconds / 1e9
    return seconds


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Each thread's CPU seconds between two ``thread_cpu`` reads, as result keys (a thread
    started meanwhile counts from zero)."""
    return {PREFIX + name: after[name] - before.get(name, 0.0) for name in after}


def report_threads(report: Report, tracked: list[dict[str, float]], saves: int) -> None:
    """The median CPU a run of each lineage thread, per save and per writer commit."""
    names = sorted({key for run in tracked for key in run if key.startswith(PREFIX + "lineage")})
    commits = statistics.median(run.get("commits", 0.0) for run in tracked)
    for key in names:
        ms = statistics.median(run.get(key, 0.0) * 1000 for run in tracked)
        name = key.removeprefix(PREFIX)
        per = (f"{ms / commits:.2f} ms a commit, {commits:.0f} commits a run"
               if name == "lineage-writer" and commits else f"{ms / saves:.2f} ms a save"
               if name in PER_SAVE else "")
        report.figure(f"CPU of {name}", ms, "ms a run", fmt="{:,.2f}", note=per)
