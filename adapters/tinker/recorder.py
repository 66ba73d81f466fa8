"""The recording side of the Tinker instrumentation: a queue and one worker thread.

The SDK's done-callbacks (on its event-loop thread) and the wrapped methods (on the caller's
thread) only put plain tuples on ``TinkerRecorder``'s queue. The worker turns them into tracker
calls, in queue order: runs (started, or resumed from the checkpoint they loaded), steps (one
``forward_backward``... + ``optim_step``, joined by call order), checkpoints (with the optimizer
steps they truly contain), inference records, failures. Telemetry never breaks training: a
record that fails is logged once, counted in ``errors`` and skipped (``strict=True`` keeps the
first such error and raises it from ``flush``, for tests).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from lineage.adapters.tinker.classify import classify
from lineage.application.inference import record_inference
from lineage.application.remote_status import mark_deleted

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """A training client's run, on the worker: its handle, the step its optimizer started at
    (0, or the steps a with-optimizer checkpoint held) and the steps waiting to be joined."""

    handle: Any
    base: int
    forward: dict[int, tuple[dict[str, float], int, float, bool]] = field(default_factory=dict)
    waiting: deque[tuple[Any, ...]] = field(default_factory=deque)


def checkpoints_on_tinker(tracker: Any, status: str | None = None) -> list[Any]:
    """The registry's ``tinker://`` checkpoints (every page), newest first."""
    found: list[Any] = []
    while True:
        page = tracker.artifacts(type="checkpoint", status=status, limit=10_000,
                                 offset=len(found))
        found.extend(page)
        if len(page) < 10_000:
            return [view for view in reversed(found) if view.uri.startswith("tinker://")]


class TinkerRecorder:
    """Records what instrumented Tinker clients do into ``tracker`` (see the module docstring).

    ``job`` (a job spec) and ``name`` are used for the runs the clients create; ``record_text``
    keeps prompt and completion tokens in inference records (off by default).
    """

    def __init__(self, tracker: Any, *, job: dict[str, Any] | None = None,
                 name: str | None = None, record_text: bool = False, strict: bool = False) -> None:
        self.tracker = tracker
        self.job = dict(job or {})
        self.name = name
        self.record_text = record_text
        self.strict = strict
        self.errors = 0
        self.first_error: BaseException | None = None
        self.unattributed = 0  # inference on a base model: no artifact to record it against
        self.runs: dict[str, RunState] = {}  # tinker model id -> state
        self.checkpoints: dict[str, UUID] = {}  # tinker path -> artifact id
        self.bound: dict[str, Any] = {}  # tinker path -> run handle a recovery created
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="lineage-tinker", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------------

    def put(self, item: tuple[Any, ...]) -> None:
        """Queue one record, ``(handler, *args)``: the worker calls ``handler(*args)`` (one of the
        ``on_*`` methods). Never blocks, never raises."""
        self._queue.put(item)

    def bind(self, tinker_path: str, run_handle: Any) -> None:
        """The next training client created from ``tinker_path`` records into ``run_handle``
        (a run a recovery created) instead of a new run."""
        self.put((self.on_bind, tinker_path, run_handle))

    def run_of(self, model_id: str, timeout: float | None = 30.0) -> Any:
        """The run handle recording the training client ``model_id`` (waits for the queue)."""
        self.flush(timeout, tracker=False)
        return self.runs[model_id].handle

    def flush(self, timeout: float | None = 30.0, *, tracker: bool = True) -> None:
        """Wait until everything queued so far was handed to the tracker (and, with
        ``tracker``, committed). In strict mode, raises the first recording error."""
        done = threading.Event()
        self.put((self.on_flush, done))
        if not done.wait(timeout):
            raise TimeoutError(f"the Tinker recorder did not drain within {timeout}s")
        if tracker:
            self.tracker.flush(timeout)
        if self.strict and self.first_error is not None:
            raise self.first_error

    def close(self, timeout: float | None = 30.0) -> None:
        self.flush(timeout, tracker=False)
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the worker ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                handler, *args = item
                handler(*args)
            except Exception as error:  # telemetry never breaks training: counted, logged once
                self.errors += 1
                if self.first_error is None:
                    self.first_error = error
                    log.exception("lineage: recording a Tinker %s failed", item[0].__name__)

    def on_flush(self, done: threading.Event) -> None:
        done.set()

    def on_bind(self, tinker_path: str, run_handle: Any) -> None:
        self.bound[tinker_path] = run_handle

    def on_run(self, model_id: str, info: dict[str, Any], origin: str,
                source_path: str | None) -> None:
        tinker = {"model_id": model_id, "origin": origin, "source_checkpoint_path": source_path,
                  "tokenizer_id": info.get("tokenizer_id"), "optimizer": info.get("optimizer")}
        job = {**self.job, "model": info["base_model"],
               "metadata": {**self.job.get("metadata", {}), "tinker": tinker}}
        if info.get("lora_rank"):
            job["adapter"] = {"type": "lora", "rank": info["lora_rank"], **info.get("lora", {})}
        tags = {"tinker.model_id": model_id, "tinker.origin": origin}
        name = self.name or f"tinker {info['base_model']}"
        with_optimizer = origin == "from_state_with_optimizer"
        if source_path is None:
            handle, base = self.tracker.start_run(name, job=job, tags=tags), 0
        elif source_path in self.bound:
            handle = self.bound.pop(source_path)
            base = handle.start_step if with_optimizer else 0
        else:
            checkpoint = self._artifact_for(source_path)
            view = self.tracker.artifact(checkpoint)
            base = (view.step or 0) if with_optimizer else 0
            if view.run_id is None:
                handle = self.tracker.start_run(name, job=job, tags=tags, inputs=[checkpoint],
                                                start_step=base)
            else:
                handle = self.tracker.resume_run(view.run_id, checkpoint, name=name, job=job,
                                                 tags=tags, optimizer_restored=with_optimizer,
                                                 step=base)
        self.runs[model_id] = RunState(handle, base)

    def on_forward(self, model_id: str, seq: int, metrics: dict[str, float], tokens: int,
                    seconds: float, error: BaseException | None) -> None:
        state = self.runs[model_id]
        if error is not None:
            self._failure(state, "forward_backward", error)
        state.forward[seq] = (metrics, tokens, seconds, error is None)
        self._drain(state)

    def on_optim(self, model_id: str, seq: int, index: int, forward_seqs: tuple[int, ...],
                  metrics: dict[str, float], seconds: float, error: BaseException | None) -> None:
        state = self.runs[model_id]
        if error is not None:
            self._failure(state, "optim_step", error)
        state.waiting.append((seq, index, forward_seqs, metrics, seconds, error is None))
        self._drain(state)

    def on_failure(self, model_id: str, op: str, error: BaseException) -> None:
        self._failure(self.runs[model_id], op, error)

    def _drain(self, state: RunState) -> None:
        """Log the waiting steps, oldest first, whose forward passes have all come back."""
        while state.waiting and all(s in state.forward for s in state.waiting[0][2]):
            seq, index, forward_seqs, optim_metrics, optim_s, ok = state.waiting.popleft()
            parts = [state.forward.pop(s) for s in forward_seqs]
            if not ok or not all(part[3] for part in parts):
                continue  # a failed op: recorded as a failure, no step
            metrics: dict[str, float] = {}
            for part in parts:
                metrics.update(part[0])
            metrics.update({f"optim:{key}": value for key, value in optim_metrics.items()})
            metrics["tinker:client_seq"] = float(seq)
            state.handle.log_step(state.base + index, metrics,
                                  tokens=sum(part[1] for part in parts),
                                  durations={"forward_backward": sum(p[2] for p in parts),
                                             "optim_step": optim_s})

    def on_save(self, model_id: str, seq: int, kind: str, name: str, contains: int,
                 path: str | None, ttl: int | None, error: BaseException | None) -> None:
        state = self.runs[model_id]
        if error is not None:
            self._failure(state, f"save {kind}", error)
            return
        if path is None:
            return
        ref = state.handle.save_checkpoint(
            path, step=state.base + contains, includes_optimizer=kind == "training",
            metadata={"tinker_checkpoint_type": kind, "tinker_name": name,
                      "optim_steps_contained": contains, "client_seq": seq, "ttl_seconds": ttl})
        self.checkpoints[path] = ref.id

    def on_sample(self, model_path: str | None, model_id: str | None, operation: str,
                   prompt: list[int] | int, num_samples: int, outputs: list[dict[str, Any]],
                   seconds: float, error: BaseException | None) -> None:
        if model_path is None:
            self.unattributed += 1
            return
        artifact = self._artifact_for(model_path)
        state = self.runs.get(model_id or "")
        detail: dict[str, Any] = {"stop_reasons": [o.get("stop_reason") for o in outputs]}
        if self.record_text:
            detail["prompt_tokens"] = prompt
            detail["output_tokens"] = [o.get("tokens", []) for o in outputs]
        record_inference(
            self.tracker, artifact, model_path=model_path, operation=operation,
            prompt_tokens=len(prompt) if isinstance(prompt, list) else prompt,
            output_tokens=sum(o.get("count", 0) for o in outputs), num_samples=num_samples,
            latency_s=seconds, outcome="ok" if error is None else type(error).__name__,
            run=None if state is None else state.handle.id, detail=detail)

    def on_deleted(self, tinker_path: str) -> None:
        known = self.checkpoints.get(tinker_path) or next(
            (view.id for view in checkpoints_on_tinker(self.tracker) if view.uri == tinker_path),
            None)
        if known is not None:  # a checkpoint lineage never saw is not ours to record
            mark_deleted(self.tracker, known, "deleted on the Tinker service through the SDK "
                                              "(RestClient)").wait()

    def _failure(self, state: RunState, op: str, error: BaseException) -> None:
        kind = classify(error)
        state.handle.record_failure(kind.error_type, f"{op}: {error}"[:8000], signal=kind.signal,
                                    retryable=kind.retryable)

    def _artifact_for(self, tinker_path: str) -> UUID:
        """The artifact of a tinker path: one this recorder saw saved, one in the registry, or
        registered now (a checkpoint saved by another process or before lineage)."""
        known = self.checkpoints.get(tinker_path)
        if known is not None:
            return known
        for view in checkpoints_on_tinker(self.tracker):
            if view.uri == tinker_path:
                self.checkpoints[tinker_path] = view.id
                return view.id
        ref = self.tracker.register_artifact(
            tinker_path, type="checkpoint", includes_optimizer="/weights/" in tinker_path,
            metadata={"registered_by": "lineage tinker instrumentation"})
        self.checkpoints[tinker_path] = ref.id
        return ref.id
