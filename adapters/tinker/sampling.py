"""Instrument a Tinker ``SamplingClient``: each ``sample`` and ``compute_logprobs`` call becomes
an inference record against what serves it (see ``TinkerRecorder.on_sample``): a saved
checkpoint or sampler weights (``model_path``), the ephemeral weights of
``save_weights_and_get_sampling_client``, or a bare base model (``base_model``, no checkpoint).
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import Future
from typing import Any

from lineage.adapters.tinker.hooks import MARK, attach, outcome
from lineage.adapters.tinker.recorder import TinkerRecorder


def instrument_sampling(client: Any, recorder: TinkerRecorder, model_path: str | None,
                        model_id: str | None, base_model: str | None = None) -> None:
    """Wrap one ``SamplingClient``'s ``sample`` and ``compute_logprobs``: each call becomes an
    inference record against ``model_path`` (the checkpoint that serves it), or, without one,
    against ``base_model``."""
    if getattr(client, MARK, None) is not None:
        return
    setattr(client, MARK, recorder)
    sample, compute_logprobs = client.sample, client.compute_logprobs
    clock = time.perf_counter
    keep_text = recorder.record_text
    served = (model_path, model_id, base_model)

    @functools.wraps(sample)
    def instrumented_sample(prompt: Any, num_samples: int, *args: Any, **kwargs: Any) -> Any:
        prompt_tokens = prompt.to_ints() if keep_text else prompt.length
        api_future = sample(prompt, num_samples, *args, **kwargs)
        start = clock()

        def done(future: Future[Any]) -> None:
            value, error = outcome(future)
            outputs = [] if value is None else [
                {"stop_reason": s.stop_reason, "count": len(s.tokens),
                 **({"tokens": list(s.tokens)} if keep_text else {})} for s in value.sequences]
            recorder.put((recorder.on_sample, served, "sample", prompt_tokens, num_samples,
                          outputs, clock() - start, error))

        attach(api_future, done)
        return api_future

    @functools.wraps(compute_logprobs)
    def instrumented_compute_logprobs(prompt: Any, *args: Any, **kwargs: Any) -> Any:
        prompt_tokens = prompt.to_ints() if keep_text else prompt.length
        api_future = compute_logprobs(prompt, *args, **kwargs)
        start = clock()

        def done(future: Future[Any]) -> None:
            recorder.put((recorder.on_sample, served, "compute_logprobs", prompt_tokens, 1, [],
                          clock() - start, future.exception()))

        attach(api_future, done)
        return api_future

    client.sample = instrumented_sample
    client.compute_logprobs = instrumented_compute_logprobs
