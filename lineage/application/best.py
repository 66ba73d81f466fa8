"""Best-checkpoint tracking (ValidationSpec): evaluations move the run's ``best`` alias.

An evaluation at step S with a strictly better ``best_metric`` value (per ``best_mode``; NaN and
infinities never count, a tie keeps the earlier checkpoint) makes the run's latest committed
checkpoint at or before S its best: a ``BestCheckpointChanged`` event on the run and a move of
the run-scoped alias ``best`` (its history is the alias's stream), which pins that checkpoint
against retention and unpins the previous best. An evaluation with no live checkpoint at or
before its step moves nothing (there is nothing to point at).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from lineage.application.commands import move_alias_in
from lineage.application.policies import CheckpointPolicy
from lineage.application.unit_of_work import UnitOfWork

BEST_ALIAS = "best"
LATEST_ALIAS = "latest"


def evaluate_in(uow: UnitOfWork, run_id: UUID, policy: CheckpointPolicy | None, step: int,
                values: dict[str, float], dataset: str | None, split: str | None) -> UUID | None:
    """Command handler: record the evaluation; move ``best`` when it wins. Returns the new best
    checkpoint's id, or None when the best did not change."""
    run = uow.run(run_id)
    run.record_evaluation(step, values, dataset, split, uow.envelope(), uow.timestamp)
    if policy is None or policy.best_metric is None:
        return None
    value = policy.metric_value(values)
    if value is None or not policy.is_better(value, run.best_value):
        return None
    found = latest_checkpoint_at(uow, run, step)
    if found is None:
        return None
    artifact_id, checkpoint_step = found
    run.change_best(artifact_id, policy.best_metric, policy.best_mode, value, checkpoint_step,
                    step, uow.envelope(), uow.timestamp)
    move_alias_in(uow, artifact_id, str(run_id), BEST_ALIAS, False, False, keep=True)
    return artifact_id


def latest_checkpoint_at(uow: UnitOfWork, run: Any, step: int) -> tuple[UUID, int] | None:
    """The run's newest checkpoint at or before ``step`` (by step, then save order), if it is
    still live."""
    eligible = [(saved, order, artifact_id)
                for order, (artifact_id, saved) in enumerate(run.checkpoints) if saved <= step]
    if not eligible:
        return None
    saved, _, artifact_id = max(eligible)
    artifact = uow.find_artifact(artifact_id)
    if artifact is None or not artifact.live:
        return None
    return artifact_id, saved
