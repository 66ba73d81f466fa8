"""The SQLite path needs neither psycopg nor psycopg_pool: a process where importing them fails
opens a SQLite tracker, logs a step and reads it back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, sys
    sys.modules["psycopg"] = None  # any "import psycopg" now raises ImportError
    sys.modules["psycopg_pool"] = None

    import lineage

    with lineage.Tracker(sys.argv[1]) as tracker:
        with tracker.start_run("no-postgres") as run:
            run.log_step(1, {"loss": 0.5})
        tracker.flush()
        steps = [(s.step, s.metrics) for s in tracker.steps(run.id)]
    loaded = sorted(m for m in sys.modules if m.startswith(("psycopg", "eventsourcing.postgres",
                                                            "lineage.adapters.postgres_store")))
    print(json.dumps({"steps": steps, "loaded": loaded,
                      "blocked": sys.modules["psycopg"] is None}))
""")


def test_a_sqlite_tracker_works_where_psycopg_cannot_be_imported(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "t.db")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)

    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["steps"] == [[1, {"loss": 0.5}]]
    # only the two blocked placeholders: nothing PostgreSQL was imported
    assert result["loaded"] == ["psycopg", "psycopg_pool"] and result["blocked"] is True
