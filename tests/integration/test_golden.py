"""Golden files: one deterministic scenario (fake clock, sequential ids) rendered as LineageIR
and as the nested shape, compared whole. Regenerate with LINEAGE_REGENERATE_GOLDEN=1 and review
the diff like code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lineage.testing import FakeClock, SequentialIds, memory_tracker

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def scenario() -> dict[str, Any]:
    clock = FakeClock()
    tracker = memory_tracker(clock=clock, ids=SequentialIds(), source="golden", actor="auditor")
    data = tracker.register_artifact("hf://datasets/org/mix", type="dataset",
                                     checksum="sha256:" + "0f" * 32)
    run = tracker.start_run("golden-sft", job={"model": "llama", "adapter": {"type": "lora", "rank": 8}},
                            inputs=[data], tags={"suite": "golden"})
    checkpoints = []
    for step in range(1, 48):
        clock.advance(1)
        run.log_step(step, {"loss": round(1.0 / step, 6), "lr": 1e-4}, epoch=0)
        if step % 20 == 0:
            checkpoints.append(run.save_checkpoint(f"tinker://golden/weights/step-{step}", step=step,
                                                   format="safetensors", includes_optimizer=True))
            run.log_eval(step, {"val_loss": round(2.0 / step, 6)}, dataset="val")
        tracker.flush()
    clock.advance(1)
    run.record_failure("backend_corrupted", "session flagged", signal="tinker.corrupted",
                       corrupted=True, step=47).wait()
    run.begin_recovery("latest").wait()
    run.select_recovery_checkpoint(checkpoints[-1], step=40, reason="latest").wait()
    clock.advance(1)
    new = tracker.resume_run(run, checkpoints[-1])
    run.complete_recovery(new, checkpoints[-1]).wait()
    with new:
        for step in range(41, 51):
            clock.advance(1)
            new.log_step(step, {"loss": 0.01, "lr": 1e-4})
            tracker.flush()
    outputs = {"old_lineageir": tracker.trace(run.id), "old_nested": tracker.trace(run.id, format="nested"),
               "new_lineageir": tracker.trace(new.id)}
    tracker.close()
    return outputs


@pytest.mark.parametrize("name", ["old_lineageir", "old_nested", "new_lineageir"])
def test_trace_matches_its_golden_file(name: str) -> None:
    produced = json.loads(json.dumps(scenario()[name], sort_keys=True))
    path = GOLDEN / f"trace_{name}.json"
    if os.environ.get("LINEAGE_REGENERATE_GOLDEN"):
        path.write_text(json.dumps(produced, indent=2, sort_keys=True) + "\n")
    assert produced == json.loads(path.read_text())


def test_the_scenario_is_deterministic() -> None:
    assert scenario() == scenario()
