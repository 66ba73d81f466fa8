"""The README's Python quick start runs as written (with a stand-in for the user's own
``train_one_step`` and the two files it names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text()
    section = text.split("## Python quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the quick start has no python block"
    return match.group(1)


def test_the_quick_start_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINEAGE_DATABASE_URL", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "step-1000.safetensors").write_bytes(b"weights")
    namespace = {"train_one_step": lambda: (0.5, 1e-4)}
    exec(compile(quick_start(), str(README), "exec"), namespace)  # our own README

    import lineage

    with lineage.Tracker() as tracker:
        [run] = tracker.runs()
        assert (run.name, run.job_status, run.steps) == ("sft-demo", "completed", 1000)
        assert [a.type for a in tracker.artifacts()] == ["dataset", "checkpoint"]
