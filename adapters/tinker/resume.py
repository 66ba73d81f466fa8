"""Recover through the Tinker SDK: the ``resume`` function for ``tracker.recover`` and
``RecoveryMonitor``.

    resume = TinkerResume(service_client, recorder)        # both from instrument(...)
    result = tracker.recover(run_id, resume=resume)
    client = resume.clients[result.new_run.id]              # keep training on it

For the checkpoint the executor chose, it creates the new training client with
``create_training_client_from_state_with_optimizer`` (exact resume: Adam moments restored), or,
when ``restore_optimizer=False``, or the checkpoint has no optimizer state and
``allow_weights_only`` (as the executor's policy), ``create_training_client_from_state`` (a new
fine-tune from those weights). Tinker makes a new training run either way; the recorder binds
it to the run the executor created, so everything the new client does is recorded there, and the Tinker run
carries that run's id in its ``user_metadata`` (``lineage_run_id``) for the monitor.

Refused before any call, with the reason (not retryable): a uri that is not ``tinker://``, and a
sampler path (``sampler_weights/``: weights only) or a checkpoint without optimizer state for an
exact resume. A failed creation is retryable when the SDK's error is (see ``classify``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lineage.adapters.tinker.classify import classify
from lineage.adapters.tinker.recorder import TinkerRecorder
from lineage.errors import LineageError

# Stamped on the new Tinker training run, so a monitor in any process can find the run it
# records (lineage.adapters.tinker.status_source).
LINEAGE_RUN_KEY = "lineage_run_id"


class TinkerResumeError(LineageError):
    """Resuming through the SDK failed or was refused; ``retry_kind`` is set (to
    ``backend_unavailable``) when another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retry_kind = "backend_unavailable" if retryable else None


class TinkerResume:
    """A resume function (``resume(checkpoint, new_run)``); see the module docstring.
    ``clients`` maps each new run id to its training client; ``on_client(client, new_run)``,
    if given, is called with each. ``timeout_s``: how long to wait for the new client."""

    def __init__(self, service_client: Any, recorder: TinkerRecorder, *,
                 restore_optimizer: bool = True, allow_weights_only: bool = False,
                 timeout_s: float = 600.0,
                 on_client: Callable[[Any, Any], None] | None = None) -> None:
        self.service_client = service_client
        self.recorder = recorder
        self.restore_optimizer = restore_optimizer
        self.allow_weights_only = allow_weights_only
        self.timeout_s = timeout_s
        self.on_client = on_client
        self.clients: dict[Any, Any] = {}

    def __call__(self, checkpoint: Any, new_run: Any) -> Any:
        path = checkpoint.uri
        exact = self.restore_optimizer and not (self.allow_weights_only
                                                and not checkpoint.includes_optimizer)
        refusal = refusal_for(path, exact, checkpoint.includes_optimizer)
        if refusal is not None:
            raise TinkerResumeError(refusal)
        create = (self.service_client.create_training_client_from_state_with_optimizer if exact
                  else self.service_client.create_training_client_from_state)
        self.recorder.bind(path, new_run)
        try:
            client = create(path, user_metadata={LINEAGE_RUN_KEY: str(new_run.id)}).result(
                timeout=self.timeout_s)
        except Exception as error:
            kind = classify(error)
            raise TinkerResumeError(f"creating a training client from {path} failed: "
                                    f"{kind.error_type}: {error}",
                                    retryable=kind.retryable) from error
        self.clients[new_run.id] = client
        if self.on_client is not None:
            self.on_client(client, new_run)
        return client


def refusal_for(path: str, exact: bool, includes_optimizer: bool | None) -> str | None:
    """Why ``path`` cannot be resumed from as asked (``exact``: with optimizer), or None."""
    if not path.startswith("tinker://"):
        return f"{path} is not a Tinker checkpoint (tinker://...): the Tinker SDK cannot load it"
    segment = path.removeprefix("tinker://").split("/")[1:2]
    if exact and segment != ["weights"]:
        return (f"{path} is a {'/'.join(segment) or 'malformed'} path: it holds weights only, "
                "and an exact resume needs a training checkpoint with optimizer state "
                "(tinker://RUN/weights/NAME, saved by save_state)")
    if exact and includes_optimizer is False:
        return f"{path} was recorded without optimizer state: an exact resume needs it"
    return None
