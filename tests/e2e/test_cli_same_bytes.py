"""``lineage artifacts --checksum`` and ``artifacts show``: the artifacts that hold the same bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import lineage
from lineage.cli.main import main


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("LINEAGE_DATABASE_URL", raising=False)


def test_every_artifact_with_the_same_bytes_is_listed_and_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "q.db")
    content = b"step-0 adapter"
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    with lineage.Tracker(db) as tracker:
        refs = []
        for name in ("a", "b"):
            path = tmp_path / f"{name}.bin"
            path.write_bytes(content)
            refs.append(tracker.start_run(name).save_checkpoint(path, step=0).wait(60))
        (tmp_path / "c.bin").write_bytes(b"other bytes")
        tracker.register_artifact(tmp_path / "c.bin", type="model")
    a, b = (str(ref.id) for ref in refs)

    assert main(["--db", db, "artifacts", "--checksum", digest, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(row["id"], row["same_content"]) for row in listed] == [(a, [b]), (b, [a])]

    assert main(["--db", db, "artifacts", "show", b[:8]]) == 0
    shown = capsys.readouterr().out
    assert "same bytes as" in shown and a in shown
    assert main(["--db", db, "artifacts", "show", a, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["same_content"] == [b]
