"""Instrument a Tinker ``RestClient`` (and ``ServiceClient.copy_weights``) where it changes or
reveals lineage:

    instrument_rest(rest_client, recorder)     # recorder: from instrument(service_client, ...)

- ``delete_checkpoint`` / ``delete_checkpoint_from_tinker_path``: the checkpoint retired by
  hand, its bytes ``deleted``;
- ``publish_checkpoint_from_tinker_path`` / ``unpublish_...``: ``RemoteStateChanged``
  ``published`` / ``unpublished`` (``lineage.domain.remote_state``);
- ``set_checkpoint_ttl_from_tinker_path``: ``RemoteStateChanged`` ``ttl_set`` (``ttl_seconds``,
  the ``expires_at`` it implies);
- ``copy_weights``: the copy, a checkpoint derived from the source (no run: the service's copy
  run cannot be trained);
- ``get_training_run``: an answer with ``corrupted: true`` for a run a client of this
  recorder records is that run's failure (signal ``tinker.corrupted``, as the status source
  reports it), which the recovery monitor recovers;
- ``list_checkpoints(run_id)``: a reconciliation: a live checkpoint of that run that the answer
  lacks, or lists with an ``expires_at`` that has passed, becomes ``expired`` (as the status
  source's poll does).

Only what succeeded is recorded (a done-callback puts it on the recorder's queue). A change to
a checkpoint lineage never saw is not recorded: it is not in the lineage.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from lineage.adapters.tinker.hooks import MARK, attach, outcome
from lineage.adapters.tinker.recorder import TinkerRecorder, checkpoints_on_tinker
from lineage.application.remote_status import mark_deleted, mark_expired, record_remote_change


def instrument_rest(rest_client: Any, recorder: TinkerRecorder) -> None:
    """Wrap ``rest_client``'s methods listed above (idempotent)."""
    if getattr(rest_client, MARK, None) is not None:
        return
    setattr(rest_client, MARK, recorder)
    rest_client.delete_checkpoint = _after(
        rest_client.delete_checkpoint, recorder,
        lambda training_run_id, checkpoint_id: (deleted,
                                                f"tinker://{training_run_id}/{checkpoint_id}"))
    rest_client.delete_checkpoint_from_tinker_path = _after(
        rest_client.delete_checkpoint_from_tinker_path, recorder, lambda tinker_path: (deleted, tinker_path))
    rest_client.publish_checkpoint_from_tinker_path = _after(
        rest_client.publish_checkpoint_from_tinker_path, recorder,
        lambda tinker_path: (changed, tinker_path, "published", {}))
    rest_client.unpublish_checkpoint_from_tinker_path = _after(
        rest_client.unpublish_checkpoint_from_tinker_path, recorder,
        lambda tinker_path: (changed, tinker_path, "unpublished", {}))
    rest_client.set_checkpoint_ttl_from_tinker_path = _after(
        rest_client.set_checkpoint_ttl_from_tinker_path, recorder,
        lambda tinker_path, ttl_seconds: (changed, tinker_path, "ttl_set",
                                           {"ttl_seconds": ttl_seconds}))
    rest_client.copy_weights = wrap_copy_weights(rest_client.copy_weights, recorder)
    rest_client.get_training_run = _after(rest_client.get_training_run, recorder,
                                          lambda training_run_id, *_, **__: (observed,),
                                          with_value=True)
    rest_client.list_checkpoints = _after(rest_client.list_checkpoints, recorder,
                                          lambda training_run_id: (listed, training_run_id),
                                          with_value=True)


def wrap_copy_weights(original: Callable[..., Any], recorder: TinkerRecorder) -> Callable[..., Any]:
    """``copy_weights(path, ..., ttl_seconds=)`` of a ``RestClient`` or ``ServiceClient``."""
    return _after(original, recorder,
                  lambda path, *_, ttl_seconds=None, **__: (copied, path, ttl_seconds),
                  with_value=True)


def _after(original: Callable[..., Any], recorder: TinkerRecorder,
           record: Callable[..., tuple[Any, ...]], *, with_value: bool = False) -> Callable[..., Any]:
    """Call through; once the future succeeded, queue ``record(*args)``'s handler and
    arguments (plus the future's value when ``with_value``) with ``recorder`` first."""

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        api_future = original(*args, **kwargs)
        try:
            handler, *values = record(*args, **kwargs)
        except Exception:  # arguments the SDK took in a way we cannot read: nothing recorded
            recorder.unreadable += 1
            return api_future

        def done(future: Future[Any]) -> None:
            value, error = outcome(future)
            if error is None:
                recorder.put((handler, recorder, *values, *((value,) if with_value else ())))

        attach(api_future, done)
        return api_future

    return wrapped


# -- on the recorder's worker --------------------------------------------------------------------

def deleted(recorder: TinkerRecorder, tinker_path: str) -> None:
    known = recorder.known_artifact(tinker_path)
    if known is not None:
        mark_deleted(recorder.tracker, known, "deleted on the Tinker service through the SDK "
                                              "(RestClient)").wait()


def changed(recorder: TinkerRecorder, tinker_path: str, change: str,
            detail: dict[str, Any]) -> None:
    known = recorder.known_artifact(tinker_path)
    if known is None:
        return
    ttl = detail.get("ttl_seconds")
    if change == "ttl_set":
        detail = {**detail, "expires_at": None if ttl is None else
                  (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat()}
    record_remote_change(recorder.tracker, known, change,
                         {**detail, "via": "tinker RestClient"}).wait()


def copied(recorder: TinkerRecorder, source_path: str, ttl: int | None, copy_path: str) -> None:
    source = recorder.tracker.artifact(recorder.artifact_for(source_path))
    ref = recorder.tracker.register_artifact(
        copy_path, type="checkpoint", parents=[source.id], step=source.step,
        includes_optimizer=source.includes_optimizer,
        metadata={"copied_from": source_path, "ttl_seconds": ttl,
                  "registered_by": "lineage tinker instrumentation (copy_weights)"})
    recorder.checkpoints[copy_path] = ref.id


def observed(recorder: TinkerRecorder, run: Any) -> None:
    state = recorder.runs.get(run.training_run_id)
    if not run.corrupted or state is None or state.handle.finished_status is not None:
        return
    if recorder.tracker.run(state.handle.id).corrupted:
        return  # already recorded (by an earlier call or the monitor)
    last = run.last_checkpoint.tinker_path if run.last_checkpoint else "none"
    state.handle.record_failure(
        "TinkerRunCorrupted", f"get_training_run says training run {run.training_run_id} is "
        f"corrupted (its last checkpoint: {last})", signal="tinker.corrupted", retryable=True,
        corrupted=True).wait()


def listed(recorder: TinkerRecorder, run_id: str, answer: Any) -> None:
    prefix = f"tinker://{run_id}/"
    views = [view for view in checkpoints_on_tinker(recorder.tracker, "live")
             if view.uri.startswith(prefix)]
    reconcile(recorder.tracker, views, answer.checkpoints, datetime.now(UTC))


def reconcile(tracker: Any, artifacts: Iterable[Any], listed: list[Any], now: datetime) -> None:
    """Mark ``expired`` each live artifact the service's checkpoint list (of its run) lacks, or
    lists with an ``expires_at`` that has passed. An ephemeral sampler (no persistent path) is
    never listed and never taken for deleted."""
    on_service = {checkpoint.tinker_path: checkpoint for checkpoint in listed}
    for view in artifacts:
        if "/ephemeral/" in view.uri:
            continue
        checkpoint = on_service.get(view.uri)
        if checkpoint is None:
            reason = "deleted on the Tinker service: list_checkpoints no longer has it"
        elif checkpoint.expires_at is not None and _utc(checkpoint.expires_at) <= now:
            reason = f"expired on the Tinker service at {_utc(checkpoint.expires_at).isoformat()}"
        else:
            continue
        mark_expired(tracker, view.id, reason).wait()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
