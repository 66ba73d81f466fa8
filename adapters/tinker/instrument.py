"""One call instruments the real Tinker SDK clients:

    recorder = instrument(service_client, tracker, job={"learning": {...}})

Per instance (no class is patched): the ``ServiceClient``'s client-creating methods (and
``copy_weights``) are wrapped, so every ``TrainingClient`` and ``SamplingClient`` they return,
and those these create, get their public methods wrapped too. A wrapped call numbers itself (the
client's call order, which is the service's execution order), calls through, and attaches a
done-callback to the SDK future that only puts a tuple on the recorder's queue
(``lineage.adapters.tinker.recorder``). Nothing on the caller's thread waits for I/O; nothing
the recorder does can raise into the training loop.

``instrument_rest(rest_client, recorder)`` (``lineage.adapters.tinker.rest``) does the same for
a ``RestClient``. Subclassing would not work (the ``ServiceClient`` builds its clients in
private methods) nor would HTTP hooks (no public hook, protobuf bodies, results by polling).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from lineage.adapters.tinker.hooks import MARK, on_result, outcome, tokens
from lineage.adapters.tinker.recorder import TinkerRecorder
from lineage.adapters.tinker.rest import instrument_rest, wrap_copy_weights
from lineage.adapters.tinker.sampling import instrument_sampling

__all__ = ["instrument", "instrument_rest", "instrument_training"]


def instrument(service_client: Any, tracker: Any, *, job: dict[str, Any] | None = None,
               name: str | None = None, record_text: bool = False, strict: bool = False,
               server_failures_to_detect: int = 3,
               recorder: TinkerRecorder | None = None) -> TinkerRecorder:
    """Instrument ``service_client`` (a ``tinker.ServiceClient``); returns the recorder
    (``flush()``, ``run_of(model_id)``, ``errors``). Idempotent per client."""
    if getattr(service_client, MARK, None) is not None:
        return getattr(service_client, MARK)
    recorder = recorder or TinkerRecorder(tracker, job=job, name=name, record_text=record_text,
                                          strict=strict,
                                          server_failures_to_detect=server_failures_to_detect)
    setattr(service_client, MARK, recorder)
    original = service_client.create_lora_training_client

    @functools.wraps(original)
    def create_lora_training_client(base_model: str, rank: int = 32, seed: int | None = None,
                                    train_mlp: bool = True, train_attn: bool = True,
                                    train_unembed: bool = True, **more: Any) -> Any:
        lora = {"seed": seed, "train_mlp": train_mlp, "train_attn": train_attn,
                "train_unembed": train_unembed}
        future = original(base_model, rank, seed, train_mlp, train_attn, train_unembed, **more)
        return on_result(future, lambda client: instrument_training(
            client, recorder, "fresh", None, lora))

    service_client.create_lora_training_client = create_lora_training_client
    for method, origin in (("create_training_client_from_state", "from_state"),
                           ("create_training_client_from_state_with_optimizer",
                            "from_state_with_optimizer")):
        setattr(service_client, method, _from_state(getattr(service_client, method), recorder,
                                                    origin))
    create_sampling = service_client.create_sampling_client

    @functools.wraps(create_sampling)
    def create_sampling_client(model_path: str | None = None, base_model: str | None = None,
                               *args: Any, **kwargs: Any) -> Any:
        future = create_sampling(model_path, base_model, *args, **kwargs)
        return on_result(future, lambda client: instrument_sampling(
            client, recorder, model_path, None, base_model))

    service_client.create_sampling_client = create_sampling_client
    service_client.copy_weights = wrap_copy_weights(service_client.copy_weights, recorder)
    return recorder


def _from_state(original: Callable[..., Any], recorder: TinkerRecorder,
                origin: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(path: str, *args: Any, **kwargs: Any) -> Any:
        future = original(path, *args, **kwargs)
        return on_result(future, lambda client: instrument_training(client, recorder, origin,
                                                                    path, {}))

    return create


class _Calls:
    """A client's call order: ``next()`` numbers a call (thread-safe: one atomic counter)."""

    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.lock = threading.Lock()
        self.optim_steps = 0  # optim_steps submitted so far
        self.forward: list[int] = []  # forward_backward seqs since the last optim_step
        self.pending: set[Future[Any]] = set()  # futures of the calls not done yet


def instrument_training(client: Any, recorder: TinkerRecorder, origin: str,
                        source_path: str | None, lora: dict[str, Any]) -> None:
    """Wrap one ``TrainingClient``'s public methods (see the module docstring)."""
    if getattr(client, MARK, None) is not None:
        return
    setattr(client, MARK, recorder)
    info = client.get_info()  # cached by the SDK at creation: no request
    model_id = str(client.model_id)
    optimizer = getattr(info, "optimizer_config", None)
    base_model = info.model_data.model_name if info.model_data else "unknown"
    recorder.put((recorder.on_run, model_id, {
        "base_model": base_model,
        "tokenizer_id": info.model_data.tokenizer_id if info.model_data else None,
        "lora_rank": info.lora_rank, "lora": {k: v for k, v in lora.items() if v is not None},
        "optimizer": getattr(optimizer, "type", None)}, origin, source_path))
    calls = _Calls()
    put = recorder.put
    clock = time.perf_counter
    optim_step = client.optim_step

    @functools.wraps(optim_step)
    def instrumented_optim_step(*args: Any, **kwargs: Any) -> Any:
        with calls.lock:
            seq = next(calls.seq)
            try:
                api_future = optim_step(*args, **kwargs)
            except BaseException as error:  # refused at call time: not an update
                put((recorder.on_failure, model_id, "optim_step", error))
                raise
            calls.optim_steps += 1
            index, forward_seqs = calls.optim_steps, tuple(calls.forward)
            calls.forward.clear()
        start = clock()

        def done(future: Future[Any]) -> None:
            value, error = outcome(future)
            put((recorder.on_optim, model_id, seq, index, forward_seqs,
                 dict(getattr(value, "metrics", None) or {}), clock() - start, error))

        _track(calls, api_future, done)
        return api_future

    client.optim_step = instrumented_optim_step
    for method in ("forward_backward", "forward_backward_custom", "forward"):
        setattr(client, method, _forward(getattr(client, method), calls, recorder, model_id,
                                         method))
    for method, kind in (("save_state", "training"), ("save_weights_for_sampler", "sampler"),
                         ("save_weights_external", "external")):
        if hasattr(client, method):
            setattr(client, method, _save(getattr(client, method), calls, recorder, model_id,
                                          kind))
    for method, with_optimizer in (("load_state", False), ("load_state_with_optimizer", True)):
        setattr(client, method, _load(getattr(client, method), calls, recorder, model_id,
                                      with_optimizer))
    client.save_weights_and_get_sampling_client = _ephemeral(
        client.save_weights_and_get_sampling_client, calls, recorder, model_id, base_model)
    create_sampling = client.create_sampling_client

    @functools.wraps(create_sampling)
    def create_sampling_client(model_path: str, *args: Any, **kwargs: Any) -> Any:
        future = create_sampling(model_path, *args, **kwargs)
        return on_result(future, lambda sampler: instrument_sampling(sampler, recorder,
                                                                     model_path, model_id))

    client.create_sampling_client = create_sampling_client


def _track(calls: _Calls, api_future: Any, on_done: Callable[[Future[Any]], None]) -> None:
    """Attach ``on_done``; until then (its record queued) the future is pending: a later
    ``load_state*`` waits for it."""
    future = api_future.future()
    pending = calls.pending
    pending.add(future)

    def done(finished: Future[Any]) -> None:
        on_done(finished)
        pending.discard(finished)

    future.add_done_callback(done)


def _forward(original: Callable[..., Any], calls: _Calls, recorder: TinkerRecorder,
             model_id: str, op: str) -> Callable[..., Any]:
    """``forward_backward`` (or the custom-loss one): its metrics and tokens join the next
    ``optim_step``'s step, by call order. ``forward`` (no gradients) is an evaluation of the
    weights after the optimizer steps submitted before it: never a step."""
    clock = time.perf_counter
    evaluation = op == "forward"

    @functools.wraps(original)
    def forward(data: Any, *args: Any, **kwargs: Any) -> Any:
        count = tokens(data)
        with calls.lock:
            seq, applied = next(calls.seq), calls.optim_steps
            if not evaluation:
                calls.forward.append(seq)
            try:
                api_future = original(data, *args, **kwargs)
            except BaseException as error:  # refused at call time: no future will come
                if not evaluation:
                    calls.forward.remove(seq)
                recorder.put((recorder.on_failure, model_id, op, error))
                raise
        start = clock()

        def done(future: Future[Any]) -> None:
            value, error = outcome(future)
            metrics = {} if value is None else dict(value.metrics)
            if evaluation:
                recorder.put((recorder.on_evaluated, model_id, seq, applied, metrics, count,
                              clock() - start, error))
            else:
                recorder.put((recorder.on_forward, model_id, seq, metrics, count,
                              clock() - start, error))

        _track(calls, api_future, done)
        return api_future

    return forward


def _save(original: Callable[..., Any], calls: _Calls, recorder: TinkerRecorder, model_id: str,
          kind: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def save(name: str, *args: Any, **kwargs: Any) -> Any:
        ttl = kwargs.get("ttl_seconds", args[0] if args else None)
        with calls.lock:  # the optim steps submitted before it are the ones it holds
            seq, contains = next(calls.seq), calls.optim_steps
            try:
                api_future = original(name, *args, **kwargs)
            except BaseException as error:
                recorder.put((recorder.on_failure, model_id, f"save {kind}", error))
                raise

        def done(future: Future[Any]) -> None:
            value, error = outcome(future)
            recorder.put((recorder.on_save, model_id, seq, kind, name, contains,
                          None if value is None else value.path, ttl, error))

        _track(calls, api_future, done)
        return api_future

    return save


def _load(original: Callable[..., Any], calls: _Calls, recorder: TinkerRecorder, model_id: str,
          with_optimizer: bool) -> Callable[..., Any]:
    """The deprecated ``load_state*``: the client goes on from the checkpoint's state, so from
    this call on it records into a new run that resumes the client's run from that checkpoint
    (queued at call time, so calls made after it land there, whenever they complete). Its
    outcome is recorded once every call submitted before it has been (the old run then ends
    ``superseded``)."""

    @functools.wraps(original)
    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        with calls.lock:
            seq, applied = next(calls.seq), calls.optim_steps
            before = calls.pending.copy()  # one C call: atomic against the SDK's thread
            try:
                api_future = original(path, *args, **kwargs)
            except BaseException as error:
                recorder.put((recorder.on_failure, model_id, "load_state", error))
                raise
            recorder.put((recorder.on_load, model_id, seq, applied, path, with_optimizer))
        waiting = [len(before) + 1]
        lock = threading.Lock()
        future = api_future.future()

        def one_done(_: Future[Any]) -> None:
            with lock:
                waiting[0] -= 1
                last = waiting[0] == 0
            if last:  # every earlier call's record is queued before this one
                recorder.put((recorder.on_loaded, model_id, seq, future.exception()))

        for earlier in before:
            earlier.add_done_callback(one_done)
        _track(calls, api_future, one_done)
        return api_future

    return load


def _ephemeral(original: Callable[..., Any], calls: _Calls, recorder: TinkerRecorder,
               model_id: str, base_model: str) -> Callable[..., Any]:
    """``save_weights_and_get_sampling_client``: weights saved with no persistent path, bound
    to the sampling client it returns; recorded as a weights-only checkpoint (its uri names
    the sampling session) at the optimizer steps submitted before it, and the client's calls
    as inference against it."""

    @functools.wraps(original)
    def save_and_sample(*args: Any, **kwargs: Any) -> Any:
        with calls.lock:
            seq, contains = next(calls.seq), calls.optim_steps
            try:
                future = original(*args, **kwargs)
            except BaseException as error:
                recorder.put((recorder.on_failure, model_id, "save ephemeral", error))
                raise
        kind = str(kwargs.get("kind", args[3] if len(args) > 3 else "snapshot"))

        def bound(sampler: Any) -> None:
            if getattr(sampler, MARK, None) is not None:
                return
            path = f"tinker://{model_id}/ephemeral/{sampler._sampling_session_id}"
            recorder.put((recorder.on_save, model_id, seq, f"ephemeral {kind}", None, contains,
                          path, None, None))
            instrument_sampling(sampler, recorder, path, model_id, base_model)

        return on_result(future, bound, lambda error: recorder.put(
            (recorder.on_save, model_id, seq, "ephemeral", None, contains, None, None, error)))

    return save_and_sample
