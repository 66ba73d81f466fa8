"""Job status (NSAI work model): what a run is, in one word, and why.

Derived from the Run aggregate and its step count, so it needs no event of its own:

- ``superseded``: recovered as another run (wins over everything: the job went on elsewhere);
- ``corrupted``: the backend flagged it corrupted (until recovered);
- ``completed`` / ``cancelled``: finished that way;
- ``failed``: finished failed, or a failure was detected while it was open;
- ``pending``: open, nothing recorded yet (no step, no checkpoint): a run a recovery created
  and no trainer has picked up, or one that is still loading;
- ``running``: open and recording.
"""

from __future__ import annotations

from typing import Any

JOB_STATUSES = ("pending", "running", "completed", "failed", "corrupted", "superseded",
                "cancelled")


def job_status(run: Any, steps: int) -> tuple[str, str | None]:
    """``(status, reason)`` for a Run aggregate with ``steps`` step events."""
    if run.superseded_by is not None or run.status == "superseded":
        return "superseded", _superseded_reason(run)
    if run.corrupted:
        return "corrupted", _with_recovery(run, run.last_failure or "flagged corrupted")
    if run.status in ("completed", "cancelled"):
        return run.status, run.finished_reason
    if run.status == "failed" or run.failures:
        return "failed", _with_recovery(run, run.finished_reason or run.last_failure)
    if steps == 0 and not run.checkpoints:
        what = "resumed run" if run.resumed_from is not None else "run"
        return "pending", f"{what} started; no step recorded yet"
    return "running", None


def _superseded_reason(run: Any) -> str:
    reason = run.finished_reason or f"resumed as {run.superseded_by}"
    if run.lost_steps is not None:
        first, last, count = run.lost_steps
        reason += f"; steps {first}-{last} lost ({count})"
    return str(reason)


def _with_recovery(run: Any, reason: str | None) -> str | None:
    if run.recovering:
        return f"{reason}; recovery attempt {run.recovery_attempts} in progress"
    if run.recovery_exhausted:
        return (f"{reason}; recovery exhausted after {run.recovery_attempts} attempt(s): "
                f"{run.last_recovery_error}")
    if run.last_recovery_error is not None:
        return f"{reason}; recovery failed: {run.last_recovery_error}"
    return reason
