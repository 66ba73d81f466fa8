"""One call instruments the real Tinker SDK clients:

    recorder = instrument(service_client, tracker, job={"learning": {...}})

Per instance (no class is patched): the ``ServiceClient``'s client-creating methods are wrapped,
so every ``TrainingClient`` and ``SamplingClient`` they return, and those these create, get their
public methods wrapped too. A wrapped call numbers itself (the client's call order, which is the
service's execution order), calls through, and attaches a done-callback to the SDK future that
only puts a tuple on the recorder's queue (``lineage.adapters.tinker.recorder``). Nothing on the
caller's thread waits for I/O; nothing the recorder does can raise into the training loop.

``instrument_rest(rest_client, recorder)`` does the same for a ``RestClient``'s checkpoint
deletions. Subclassing would not work (the ``ServiceClient`` builds its clients in private methods) nor
would HTTP hooks (no public hook, protobuf bodies, results by polling).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from lineage.adapters.tinker.recorder import TinkerRecorder

_MARK = "_lineage_instrumented"


def instrument(service_client: Any, tracker: Any, *, job: dict[str, Any] | None = None,
               name: str | None = None, record_text: bool = False,
               strict: bool = False, recorder: TinkerRecorder | None = None) -> TinkerRecorder:
    """Instrument ``service_client`` (a ``tinker.ServiceClient``); returns the recorder
    (``flush()``, ``run_of(model_id)``, ``errors``). Idempotent per client."""
    recorder = recorder or TinkerRecorder(tracker, job=job, name=name, record_text=record_text,
                                          strict=strict)
    if getattr(service_client, _MARK, None) is not None:
        return getattr(service_client, _MARK)
    setattr(service_client, _MARK, recorder)
    original = service_client.create_lora_training_client

    @functools.wraps(original)
    def create_lora_training_client(base_model: str, rank: int = 32, seed: int | None = None,
                                    train_mlp: bool = True, train_attn: bool = True,
                                    train_unembed: bool = True, **more: Any) -> Any:
        lora = {"seed": seed, "train_mlp": train_mlp, "train_attn": train_attn,
                "train_unembed": train_unembed}
        future = original(base_model, rank, seed, train_mlp, train_attn, train_unembed, **more)
        return _on_result(future, lambda client: instrument_training(
            client, recorder, "fresh", None, lora))

    service_client.create_lora_training_client = create_lora_training_client
    for method, origin in (("create_training_client_from_state", "from_state"),
                           ("create_training_client_from_state_with_optimizer",
                            "from_state_with_optimizer")):
        setattr(service_client, method, _from_state(getattr(service_client, method), recorder,
                                                    origin))
    create_sampling = service_client.create_sampling_client

    @functools.wraps(create_sampling)
    def create_sampling_client(model_path: str | None = None, *args: Any, **kwargs: Any) -> Any:
        future = create_sampling(model_path, *args, **kwargs)
        return _on_result(future, lambda client: instrument_sampling(client, recorder,
                                                                     model_path, None))

    service_client.create_sampling_client = create_sampling_client
    return recorder


def _from_state(original: Callable[..., Any], recorder: TinkerRecorder,
                origin: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(path: str, *args: Any, **kwargs: Any) -> Any:
        future = original(path, *args, **kwargs)
        return _on_result(future, lambda client: instrument_training(client, recorder, origin,
                                                                     path, {}))

    return create


def _on_result(future: Any, instrument_client: Callable[[Any], None]) -> Any:
    """Make ``future`` (a client-creating future) instrument its client before anyone gets
    it: ``result`` and ``result_async`` are wrapped on this instance (the deprecated forwarding
    methods call ``result`` too). Instrumenting twice is a no-op."""
    result, result_async = future.result, future.result_async

    def instrumented_result(timeout: float | None = None) -> Any:
        client = result(timeout)
        instrument_client(client)
        return client

    async def instrumented_result_async(timeout: float | None = None) -> Any:
        client = await result_async(timeout)
        instrument_client(client)
        return client

    future.result = instrumented_result
    future.result_async = instrumented_result_async
    return future


class _Calls:
    """A client's call order: ``next()`` numbers a call (thread-safe: one atomic counter)."""

    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.lock = threading.Lock()
        self.optim_steps = 0  # optim_steps submitted so far
        self.forward: list[int] = []  # forward_backward seqs since the last optim_step


def _tokens(data: Any) -> int:
    """The tokens of a batch of datums; 0 when it is not one (the SDK will say why)."""
    try:
        return sum(int(datum.model_input.length) for datum in data)
    except Exception:  # the user's bad input is the SDK's to refuse, not ours
        return 0


def _attach(api_future: Any, on_done: Callable[[Future[Any]], None]) -> None:
    api_future.future().add_done_callback(on_done)


def _outcome(done: Future[Any]) -> tuple[Any, BaseException | None]:
    error = done.exception()
    return (None, error) if error is not None else (done.result(), None)


def instrument_training(client: Any, recorder: TinkerRecorder, origin: str,
                        source_path: str | None, lora: dict[str, Any]) -> None:
    """Wrap one ``TrainingClient``'s public methods (see the module docstring)."""
    if getattr(client, _MARK, None) is not None:
        return
    setattr(client, _MARK, recorder)
    info = client.get_info()  # cached by the SDK at creation: no request
    model_id = str(client.model_id)
    optimizer = getattr(info, "optimizer_config", None)
    recorder.put((recorder.on_run, model_id, {
        "base_model": info.model_data.model_name if info.model_data else "unknown",
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
            value, error = _outcome(future)
            put((recorder.on_optim, model_id, seq, index, forward_seqs,
                 dict(getattr(value, "metrics", None) or {}), clock() - start, error))

        _attach(api_future, done)
        return api_future

    client.optim_step = instrumented_optim_step
    for method in ("forward_backward", "forward_backward_custom"):
        setattr(client, method, _forward(getattr(client, method), calls, recorder, model_id,
                                         method))
    for method, kind in (("save_state", "training"), ("save_weights_for_sampler", "sampler")):
        setattr(client, method, _save(getattr(client, method), calls, recorder, model_id, kind))
    create_sampling = client.create_sampling_client

    @functools.wraps(create_sampling)
    def create_sampling_client(model_path: str, *args: Any, **kwargs: Any) -> Any:
        future = create_sampling(model_path, *args, **kwargs)
        return _on_result(future, lambda sampler: instrument_sampling(sampler, recorder,
                                                                      model_path, model_id))

    client.create_sampling_client = create_sampling_client


def _forward(original: Callable[..., Any], calls: _Calls, recorder: TinkerRecorder,
             model_id: str, op: str) -> Callable[..., Any]:
    """``forward_backward`` (or the custom-loss one): its metrics and tokens join the next
    ``optim_step``'s step, by call order."""
    clock = time.perf_counter

    @functools.wraps(original)
    def forward(data: Any, *args: Any, **kwargs: Any) -> Any:
        tokens = _tokens(data)
        with calls.lock:
            seq = next(calls.seq)
            calls.forward.append(seq)
            try:
                api_future = original(data, *args, **kwargs)
            except BaseException as error:  # refused at call time: no future will come
                calls.forward.remove(seq)
                recorder.put((recorder.on_failure, model_id, op, error))
                raise
        start = clock()

        def done(future: Future[Any]) -> None:
            value, error = _outcome(future)
            recorder.put((recorder.on_forward, model_id, seq, {} if value is None else dict(value.metrics),
                          tokens, clock() - start, error))

        _attach(api_future, done)
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
            value, error = _outcome(future)
            recorder.put((recorder.on_save, model_id, seq, kind, name, contains,
                          None if value is None else value.path, ttl, error))

        _attach(api_future, done)
        return api_future

    return save


def instrument_sampling(client: Any, recorder: TinkerRecorder, model_path: str | None,
                        model_id: str | None) -> None:
    """Wrap one ``SamplingClient``'s ``sample`` and ``compute_logprobs``: each call becomes an
    inference record against ``model_path`` (the checkpoint that serves it)."""
    if getattr(client, _MARK, None) is not None:
        return
    setattr(client, _MARK, recorder)
    sample, compute_logprobs = client.sample, client.compute_logprobs
    clock = time.perf_counter
    keep_text = recorder.record_text

    @functools.wraps(sample)
    def instrumented_sample(prompt: Any, num_samples: int, *args: Any, **kwargs: Any) -> Any:
        prompt_tokens = prompt.to_ints() if keep_text else prompt.length
        api_future = sample(prompt, num_samples, *args, **kwargs)
        start = clock()

        def done(future: Future[Any]) -> None:
            value, error = _outcome(future)
            outputs = [] if value is None else [
                {"stop_reason": s.stop_reason, "count": len(s.tokens),
                 **({"tokens": list(s.tokens)} if keep_text else {})} for s in value.sequences]
            recorder.put((recorder.on_sample, model_path, model_id, "sample", prompt_tokens, num_samples,
                          outputs, clock() - start, error))

        _attach(api_future, done)
        return api_future

    @functools.wraps(compute_logprobs)
    def instrumented_compute_logprobs(prompt: Any, *args: Any, **kwargs: Any) -> Any:
        prompt_tokens = prompt.to_ints() if keep_text else prompt.length
        api_future = compute_logprobs(prompt, *args, **kwargs)
        start = clock()

        def done(future: Future[Any]) -> None:
            error = future.exception()
            recorder.put((recorder.on_sample, model_path, model_id, "compute_logprobs", prompt_tokens, 1,
                          [], clock() - start, error))

        _attach(api_future, done)
        return api_future

    client.sample = instrumented_sample
    client.compute_logprobs = instrumented_compute_logprobs


def instrument_rest(rest_client: Any, recorder: TinkerRecorder) -> None:
    """Wrap a ``RestClient``'s checkpoint deletions: a checkpoint deleted through it is
    recorded as retired by hand, its bytes ``deleted`` (the status source would otherwise find
    it gone at its next poll and call it expired)."""
    if getattr(rest_client, _MARK, None) is not None:
        return
    setattr(rest_client, _MARK, recorder)
    delete, delete_path = rest_client.delete_checkpoint, rest_client.delete_checkpoint_from_tinker_path

    def deleted(path: str, api_future: Any) -> Any:
        def done(future: Future[Any]) -> None:
            if future.exception() is None:
                recorder.put((recorder.on_deleted, path))

        _attach(api_future, done)
        return api_future

    @functools.wraps(delete)
    def delete_checkpoint(training_run_id: str, checkpoint_id: str) -> Any:
        return deleted(f"tinker://{training_run_id}/{checkpoint_id}",
                       delete(training_run_id, checkpoint_id))

    @functools.wraps(delete_path)
    def delete_checkpoint_from_tinker_path(tinker_path: str) -> Any:
        return deleted(tinker_path, delete_path(tinker_path))

    rest_client.delete_checkpoint = delete_checkpoint
    rest_client.delete_checkpoint_from_tinker_path = delete_checkpoint_from_tinker_path

