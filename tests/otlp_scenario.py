"""A deterministic recorded scenario for the OTLP tests: fixed clock, counter ids.

Determinism needs every id drawn in a fixed order: the writer thread draws ids for queued steps
when it builds a batch, so the scenario flushes after each run of steps and waits for every
command before the caller draws the next id. Remote URIs with given checksums keep file paths
(which differ per test) out of the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DIGEST_A, DIGEST_B, DIGEST_D = "a" * 64, "b" * 64, "d" * 64


class FakeClock:
    """Returns the time it was set to; the test moves it (reads never advance it)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


class CounterIds:
    """UUIDs 1, 2, 3, ... as version-4-shaped ids (so they look like what uuid4 gives)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> UUID:
        self.count += 1
        return UUID(f"00000000-0000-4000-8000-{self.count:012x}")


@dataclass(frozen=True)
class Scenario:
    failed_run: UUID
    resumed_run: UUID
    checkpoint: UUID
    resumed_checkpoint: UUID
    dataset: UUID


def deterministic_tracker(url: str, make: Any, export_otlp: bool | None = False
                          ) -> tuple[Any, FakeClock]:
    clock = FakeClock()
    tracker = make(url, clock=clock, id_source=CounterIds(), source="test-host/train.py",
                   actor="alice", tenant_id="acme", export_otlp=export_otlp)
    return tracker, clock


def record_scenario(tracker: Any, clock: FakeClock, steps: int = 6) -> Scenario:
    """A run trains ``steps`` steps, saves a checkpoint at 4, evaluates, is flagged corrupted,
    recovers into a resumed run that trains to ``steps`` + 1 and finishes."""
    dataset = tracker.register_artifact("s3://data/train.jsonl", type="dataset",
                                        checksum=f"sha256:{DIGEST_D}", size=1234)
    job = {"model": "llama-3.2-1b", "adapter": {"type": "lora", "rank": 16},
           "learning": {"learning_rate": 1e-4, "batch_size": 8}}
    run = tracker.start_run("sft", job=job, inputs=[dataset], tags={"team": "alignment"})
    _steps(run, clock, 1, steps)
    clock.advance()
    ckpt = run.save_checkpoint("tinker://sft/ckpt-4", step=4, checksum=f"sha256:{DIGEST_A}",
                               format="safetensors", includes_optimizer=True).wait()
    clock.advance()
    run.log_eval(4, {"val_loss": 0.5, "accuracy": 0.75}, dataset="val").wait()
    clock.advance()
    run.record_failure("backend_corrupted", "training service flagged the session corrupted",
                       signal="tinker.corrupted", retryable=True, corrupted=True,
                       step=steps).wait()
    clock.advance()
    run.begin_recovery("latest").wait()
    clock.advance()
    run.select_recovery_checkpoint(ckpt, step=4, reason="latest checkpoint").wait()
    clock.advance()
    resumed = tracker.resume_run(run, ckpt)
    clock.advance()
    run.complete_recovery(resumed, ckpt).wait()
    _steps(resumed, clock, 5, steps + 1)
    clock.advance()
    second = resumed.save_checkpoint("tinker://sft/ckpt-7", step=steps + 1, parents=[ckpt],
                                     checksum=f"sha256:{DIGEST_B}").wait()
    clock.advance()
    resumed.finish("completed").wait()
    tracker.flush()
    return Scenario(run.id, resumed.id, ckpt.id, second.id, dataset.id)


def _steps(run: Any, clock: FakeClock, first: int, last: int) -> None:
    for step in range(first, last + 1):
        clock.advance()
        run.log_step(step, {"loss": round(1.0 / step, 6), "lr": 1e-4}, epoch=0, tokens=64)
    run.flush()
