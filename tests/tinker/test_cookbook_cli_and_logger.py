"""``lineage import tinker-cookbook`` on a directory the cookbook wrote, and the cookbook
``ml_log`` logger recording a recipe live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tinker_cookbook.utils import ml_log

import lineage
from lineage.adapters.tinker.ml_logger import add_lineage_logger
from lineage.cli.main import main
from tests.tinker.cookbook_fixture import write_cookbook_log


def test_import_tinker_cookbook_is_idempotent_and_follows(
        service: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "sl"
    write_cookbook_log(service, str(log_dir), n_batches=6, crash_after=5)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["--db", url, "import", "tinker-cookbook", str(log_dir), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (len(first["runs"]), first["steps"], first["checkpoints"]) == (2, 7, 3)
    assert main(["--db", url, "import", "tinker-cookbook", str(log_dir), "--follow",
                 "--polls", "2", "--interval", "0", "--json"]) == 0
    passes = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["runs"] for p in passes] == [first["runs"]] * 2
    with lineage.Tracker(url) as tracker:
        assert len(tracker.runs()) == 2
        assert sum(len(tracker.steps(run)) for run in first["runs"]) == 7
    assert main(["--db", url, "import", "tinker-cookbook", str(tmp_path / "nope")]) == 2


def test_the_ml_log_logger_records_a_recipe_live(tmp_path: Path, tracker: Any) -> None:
    config = {"model_name": "base", "learning_rate": 1e-4}
    ml_logger = ml_log.setup_logging(log_dir=str(tmp_path / "log"), config=config,
                                     do_configure_logging_module=False)
    recorder = add_lineage_logger(ml_logger, tracker, config, name="recipe")
    ml_logger.log_metrics({"train_mean_nll": 1.5, "progress": 0.5, "note": "text"}, step=0)
    ml_logger.log_metrics({"train_mean_nll": 1.25}, step=1)
    ml_logger.close()
    tracker.flush()
    [run] = tracker.runs()
    assert run.name == "recipe" and run.job_status == "completed"
    assert run.job["metadata"]["config"] == config
    steps = tracker.steps(run.id)
    assert [(s.step, s.metrics) for s in steps] == [
        (0, {"train_mean_nll": 1.5, "progress": 0.5}), (1, {"train_mean_nll": 1.25})]
    assert recorder.errors == 0
    recorder.log_metrics({"loss": 1.0}, step=-1)  # refused by lineage: counted, not raised
    assert recorder.errors == 1
