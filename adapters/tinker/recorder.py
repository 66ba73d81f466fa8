"""The recording side of the Tinker instrumentation: a queue and one worker thread.

The SDK's done-callbacks (on its event-loop thread) and the wrapped methods (on the caller's
thread) only put plain tuples on ``TinkerRecorder``'s queue. The worker turns them into tracker
calls, in queue order: runs (started, or resumed from the checkpoint they loaded, by a new
client or a deprecated ``load_state*``), steps (one ``forward_backward``... + ``optim_step``,
joined by call order), evaluations (``forward``), checkpoints (training, sampler, external,
ephemeral; with the optimizer steps they truly contain), inference records (against a
checkpoint or a base model), failures (and a run's death after server-side failures in a
row). Each call is routed by its number to the run its client recorded into then
(``RunState.at``). Telemetry never breaks training: a
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

from lineage.adapters.tinker.classify import SERVER_FAILED, classify
from lineage.application.inference import record_inference
from lineage.errors import ValidationError

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """Where a training client's calls from ``from_seq`` on are recorded: ``handle``'s run,
    whose steps are numbered ``base + (optim step index - offset)``."""

    from_seq: int
    handle: Any
    base: int
    offset: int = 0

    def step(self, index: int) -> int:
        return self.base + index - self.offset


@dataclass
class RunState:
    """A training client's runs, on the worker: one segment, or one more per deprecated
    ``load_state*`` (the client goes on from another state, in a new run), and the steps
    waiting to be joined."""

    segments: list[Segment]
    forward: dict[int, tuple[dict[str, float], int, float, bool]] = field(default_factory=dict)
    waiting: deque[tuple[Any, ...]] = field(default_factory=deque)
    superseded: dict[int, Any] = field(default_factory=dict)  # load seq -> run it replaces
    server_failures: int = 0  # server-side failed requests in a row

    @property
    def handle(self) -> Any:
        return self.segments[-1].handle

    def at(self, seq: int) -> Segment:
        """The segment a call numbered ``seq`` belongs to."""
        for segment in reversed(self.segments):
            if segment.from_seq < seq:
                return segment
        return self.segments[0]


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
    ``server_failures_to_detect``: that many requests of one training client in a row that
    failed on the server's side (``RequestFailedError`` of category ``server``, which the SDK
    never retries) are recorded as a dead run (signal ``tinker.server_failures``), which the
    recovery monitor recovers; a single one stays a failed request (``request.*``).
    """

    def __init__(self, tracker: Any, *, job: dict[str, Any] | None = None,
                 name: str | None = None, record_text: bool = False, strict: bool = False,
                 server_failures_to_detect: int = 3) -> None:
        if isinstance(server_failures_to_detect, bool) or not isinstance(
                server_failures_to_detect, int) or server_failures_to_detect < 1:
            raise ValidationError("server_failures_to_detect", "must be an integer >= 1",
                                  server_failures_to_detect)
        self.server_failures_to_detect = server_failures_to_detect
        self.tracker = tracker
        self.job = dict(job or {})
        self.name = name
        self.record_text = record_text
        self.strict = strict
        self.errors = 0
        self.first_error: BaseException | None = None
        self.unreadable = 0  # REST calls whose arguments could not be read: not recorded
        self.late = 0  # calls that completed after their run had ended: not recorded
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

    def model_id_of(self, run_id: Any) -> str | None:
        """The Tinker training client (model id) recording into lineage run ``run_id``."""
        for model_id, state in list(self.runs.items()):
            if any(segment.handle.id == run_id for segment in state.segments):
                return model_id
        return None

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
            checkpoint = self.artifact_for(source_path)
            view = self.tracker.artifact(checkpoint)
            base = (view.step or 0) if with_optimizer else 0
            if view.run_id is None:
                handle = self.tracker.start_run(name, job=job, tags=tags, inputs=[checkpoint],
                                                start_step=base)
            else:
                handle = self.tracker.resume_run(view.run_id, checkpoint, name=name, job=job,
                                                 tags=tags, optimizer_restored=with_optimizer,
                                                 step=base)
        self.runs[model_id] = RunState([Segment(0, handle, base)])

    def on_forward(self, model_id: str, seq: int, metrics: dict[str, float], tokens: int,
                   seconds: float, error: BaseException | None) -> None:
        state = self.runs[model_id]
        self._outcome(state, state.at(seq).handle, "forward_backward", error)
        state.forward[seq] = (metrics, tokens, seconds, error is None)
        self._drain(state)

    def on_optim(self, model_id: str, seq: int, index: int, forward_seqs: tuple[int, ...],
                 metrics: dict[str, float], seconds: float, error: BaseException | None) -> None:
        state = self.runs[model_id]
        self._outcome(state, state.at(seq).handle, "optim_step", error)
        state.waiting.append((seq, index, forward_seqs, metrics, seconds, error is None))
        self._drain(state)

    def on_evaluated(self, model_id: str, seq: int, applied: int, metrics: dict[str, float],
                     tokens: int, seconds: float, error: BaseException | None) -> None:
        """A ``forward`` (no gradients): an evaluation of the weights after the ``applied``
        optimizer steps submitted before it, never a step."""
        state = self.runs[model_id]
        segment = state.at(seq)
        self._outcome(state, segment.handle, "forward", error)
        if error is None and self._open(segment.handle):
            segment.handle.log_eval(segment.step(applied), {
                **metrics, "tinker:tokens": float(tokens), "tinker:seconds": seconds},
                dataset="tinker.forward")

    def on_failure(self, model_id: str, op: str, error: BaseException) -> None:
        state = self.runs[model_id]
        self._outcome(state, state.handle, op, error)

    def on_load(self, model_id: str, seq: int, applied: int, path: str,
                with_optimizer: bool) -> None:
        """A deprecated ``load_state*`` submitted: from call ``seq`` on, the client records
        into a new run resuming its run from the checkpoint ``path``."""
        state = self.runs[model_id]
        old = state.handle
        checkpoint = self.artifact_for(path)
        base = (self.tracker.artifact(checkpoint).step or 0) if with_optimizer else 0
        origin = "load_state_with_optimizer" if with_optimizer else "load_state"
        handle = self.tracker.resume_run(old.id, checkpoint, optimizer_restored=with_optimizer,
                                         step=base, tags={"tinker.model_id": model_id,
                                                          "tinker.origin": origin})
        state.segments.append(Segment(seq, handle, base, applied))
        state.superseded[seq] = old

    def on_loaded(self, model_id: str, seq: int, error: BaseException | None) -> None:
        """The load's outcome, queued after every call submitted before it was recorded: the
        run it replaced ends ``superseded`` (a failed load is a failure of the new run)."""
        state = self.runs[model_id]
        new = state.at(seq + 1).handle
        self._outcome(state, new, "load_state", error)
        old = state.superseded.pop(seq, None)  # None: recording the load itself failed
        if old is not None and old.finished_status is None:
            old.finish("superseded", superseded_by=new.id,
                       reason="the Tinker training client loaded another state (load_state)").wait()

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
            segment = state.at(seq)
            if not self._open(segment.handle):
                continue
            segment.handle.log_step(segment.step(index), metrics,
                                    tokens=sum(part[1] for part in parts),
                                    durations={"forward_backward": sum(p[2] for p in parts),
                                               "optim_step": optim_s})

    def on_save(self, model_id: str, seq: int, kind: str, name: str | None, contains: int,
                path: str | None, ttl: int | None, error: BaseException | None) -> None:
        state = self.runs[model_id]
        segment = state.at(seq)
        self._outcome(state, segment.handle, f"save {kind}", error)
        if error is not None or path is None or not self._open(segment.handle):
            return
        ref = segment.handle.save_checkpoint(
            path, step=segment.step(contains), includes_optimizer=kind == "training",
            metadata={"tinker_checkpoint_type": kind, "tinker_name": name,
                      "optim_steps_contained": contains, "client_seq": seq, "ttl_seconds": ttl})
        self.checkpoints[path] = ref.id

    def on_sample(self, served: tuple[str | None, str | None, str | None], operation: str,
                  prompt: list[int] | int, num_samples: int, outputs: list[dict[str, Any]],
                  seconds: float, error: BaseException | None) -> None:
        """One call of a sampling client, against what serves it: ``served`` is (model path,
        the training client's model id, base model)."""
        model_path, model_id, base_model = served
        if model_path is not None:
            artifact = self.artifact_for(model_path)
        else:  # a bare base model: the model itself, registered once
            model_path = f"hf://{base_model}"
            artifact = self.checkpoints.get(model_path) or self._base_model(model_path)
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

    def _base_model(self, uri: str) -> UUID:
        ref = self.tracker.register_artifact(
            uri, type="model", name=uri.removeprefix("hf://"),
            metadata={"registered_by": "lineage tinker instrumentation",
                      "served_by": "tinker (a base model, sampled with no checkpoint)"})
        self.checkpoints[uri] = ref.id
        return ref.id

    def _outcome(self, state: RunState, handle: Any, op: str, error: BaseException | None) -> None:
        """Record a failed call on ``handle``'s run; count server-side failures in a row and
        record ``server_failures_to_detect`` of them as the run's death."""
        if error is None:
            state.server_failures = 0
            return
        if not self._open(handle):
            return
        kind = classify(error)
        handle.record_failure(kind.error_type, f"{op}: {error}"[:8000], signal=kind.signal,
                              retryable=kind.retryable)
        if kind.signal != SERVER_FAILED:
            return
        state.server_failures += 1
        if state.server_failures == self.server_failures_to_detect:
            handle.record_failure(
                "TinkerServerFailures", f"{state.server_failures} requests of this training "
                f"client in a row failed on the Tinker service's side (the last: {op}: "
                f"{error})"[:8000],
                signal="tinker.server_failures", retryable=True)

    def on_superseded(self, model_id: str) -> None:
        """A recovery in this process superseded the run ``model_id`` records into (see
        ``TinkerRecovery``): what its calls still in flight report is not recorded."""
        self.runs[model_id].handle.finished_status = "superseded"

    def _open(self, handle: Any) -> bool:
        """Whether ``handle``'s run takes records; a call that completes after its run ended
        is counted in ``late`` and not recorded (the domain refuses it)."""
        if handle.finished_status is None:
            return True
        self.late += 1
        return False

    def known_artifact(self, tinker_path: str) -> UUID | None:
        """The artifact of a tinker path lineage has seen (one this recorder saw saved, else
        the newest in the registry, remembered), or None."""
        known = self.checkpoints.get(tinker_path)
        if known is None:
            known = next((view.id for view in checkpoints_on_tinker(self.tracker)
                          if view.uri == tinker_path), None)
            if known is not None:
                self.checkpoints[tinker_path] = known
        return known

    def artifact_for(self, tinker_path: str) -> UUID:
        """The artifact of a tinker path (``known_artifact``), or one registered now (a
        checkpoint saved by another process or before lineage)."""
        known = self.known_artifact(tinker_path)
        if known is not None:
            return known
        ref = self.tracker.register_artifact(
            tinker_path, type="checkpoint", includes_optimizer="/weights/" in tinker_path,
            metadata={"registered_by": "lineage tinker instrumentation"})
        self.checkpoints[tinker_path] = ref.id
        return ref.id
