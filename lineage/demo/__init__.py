"""``lineage demo``: a small NumPy training run with real safetensors checkpoints, a failure
and a recovery (``scenario``), then a summary of what was recorded (``report``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lineage.demo.report import report
from lineage.demo.scenario import DemoResult, run_demo


def run_and_report(database_url: str | None, directory: Path, steps: int, console: Any) -> DemoResult:
    """Run the scenario, printing its progress and then the summary to ``console``."""
    result = run_demo(database_url, directory, steps, console=console)
    report(console, result, database_url)
    return result
