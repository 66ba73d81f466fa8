"""Writes a tinker-cookbook log directory with the cookbook's own code (``ml_log``,
``CheckpointManager``, ``checkpoint_utils.get_last_checkpoint``, ``trace.IterationWindow``),
driving the real SDK against the fake service with the SL loop's bookkeeping
(``tinker_cookbook.supervised.train.main``: submit one batch ahead, label a checkpoint with the
batch just finished, resume *at* that batch, a final record with ``batch=0``).

The first process "crashes" after ``crash_after`` batches; the second re-runs the same command on
the same log path, resumes from the last checkpoint (replaying its batch: the #935 off-by-one)
and finishes with the mislabelled ``final`` record (#367)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from tinker import types
from tinker_cookbook import checkpoint_utils
from tinker_cookbook.utils import ml_log, trace

from tests.tinker.conftest import datum

CONFIG = {"model_name": "meta-llama/Llama-3.2-1B", "lora_rank": 8, "learning_rate": 1e-4,
          "num_epochs": 1, "save_every": 3, "log_path": None}


async def sl_process(service: Any, log_path: str, n_batches: int,
                     crash_after: int | None = None) -> None:
    """One run of the SL command on ``log_path`` (see the module docstring)."""
    resume = checkpoint_utils.get_last_checkpoint(log_path)
    if resume is not None:
        client = await service.create_training_client_from_state_with_optimizer(
            resume.state_path).result_async()
        start_batch, elapsed = resume.batch or 0, int(resume.get("elapsed_tokens", 0))
    else:
        client = await service.create_lora_training_client(
            CONFIG["model_name"], rank=CONFIG["lora_rank"]).result_async()
        start_batch, elapsed = 0, 0
    ml_logger = ml_log.setup_logging(log_dir=log_path, config={**CONFIG, "log_path": log_path},
                                     do_configure_logging_module=False)
    manager = checkpoint_utils.CheckpointManager(
        training_client=client, service_client=service, log_path=log_path,
        save_every=CONFIG["save_every"], ttl_seconds=None, store=ml_logger.store)
    pending: deque[tuple[int, Any, Any, trace.IterationWindow]] = deque()

    async def finish() -> None:
        nonlocal elapsed
        step, fb, optim, window = pending.popleft()
        elapsed += 3
        await manager.maybe_save_async(step=step, loop_state={
            "epoch": 0, "batch": step, "elapsed_tokens": elapsed}, elapsed_tokens=elapsed)
        token = trace._iteration_window.set(window)  # as the SL loop does
        try:
            async with trace.scope_span("step"):
                result = await fb.result_async()
                optim_result = await optim.result_async()
        finally:
            trace._iteration_window.reset(token)
        metrics = {"train_mean_nll": result.metrics["loss:sum"], "num_tokens": 3,
                   "learning_rate": CONFIG["learning_rate"], **(optim_result.metrics or {})}
        window.save_timing(step, store=ml_logger.store)
        ml_logger.log_metrics(metrics=metrics, step=step)

    for batch in range(start_batch, n_batches):
        if crash_after is not None and batch >= crash_after:
            return  # the process dies: no final checkpoint, pending work lost
        fb = client.forward_backward([datum()], "cross_entropy")
        optim = client.optim_step(types.AdamParams(learning_rate=CONFIG["learning_rate"]))
        pending.append((batch, fb, optim, trace.IterationWindow()))
        if len(pending) >= 2:  # submit_ahead=1
            await finish()
    while pending:
        await finish()
    await manager.save_final_async(loop_state={"epoch": CONFIG["num_epochs"], "batch": 0,
                                               "elapsed_tokens": elapsed})
    ml_logger.close()
    ml_logger.store.storage.flush()  # a cloud log path stages appends until flushed


def write_cookbook_log(service: Any, log_path: str, n_batches: int = 10,
                       crash_after: int = 8) -> None:
    asyncio.run(sl_process(service, log_path, n_batches, crash_after))
    asyncio.run(sl_process(service, log_path, n_batches))
