"""``lineage monitor --source tinker``: configured as the SDK is (TINKER_API_KEY,
TINKER_BASE_URL or --tinker-base-url), against the fake service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.adapters.tinker import instrument
from lineage.cli.main import main
from tests.tinker.conftest import train


def test_monitor_source_tinker_detects_and_recovers_a_corrupted_run(
        service: Any, server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with lineage.Tracker(url) as tracker:
        recorder = instrument(service, tracker, strict=True)
        client = service.create_lora_training_client("base", rank=4).result(timeout=30)
        train(client, 3)
        client.save_state("000003").result(timeout=30)
        train(client, 2)
        recorder.flush()
        run_id = str(recorder.run_of(client.model_id).id)
        recorder.close()
    monkeypatch.setenv("TINKER_API_KEY", "tml-fake")
    assert main(["--db", url, "monitor", "--source", "tinker", "--tinker-base-url",
                 server.base_url, "--once", "--json"]) == 0
    quiet = json.loads(capsys.readouterr().out)
    assert quiet == {"actions": [], "errors": []}
    server.service.corrupt(client.model_id)
    monkeypatch.setenv("TINKER_BASE_URL", server.base_url)
    assert main(["--db", url, "monitor", "--source", "tinker", "--once", "--json"]) == 0
    [action] = json.loads(capsys.readouterr().out)["actions"]
    assert action["signal"]["signal"] == "tinker.corrupted"
    assert action["signal"]["run_id"] == run_id
    assert action["result"]["status"] == "recovered"
    assert action["result"]["lost_steps"]["first_step"] == 4
    server.service.vanish(client.model_id)
    assert main(["--db", url, "monitor", "--source", "tinker", "--source", "local",
                 "--once"]) == 0
    assert "poll of tinker failed" in capsys.readouterr().out


def test_monitor_source_tinker_needs_an_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    lineage.Tracker(url).close()
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    assert main(["--db", url, "monitor", "--source", "tinker", "--once"]) == 2
    assert "TINKER_API_KEY is not set" in capsys.readouterr().err
