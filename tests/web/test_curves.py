"""The run page's curves (``GET /v1/runs/{id}/curves``): every metric downsampled in one pass,
by the one rule of ``metrics/{name}?buckets=N`` (the same buckets), recomputed here from the
full history (``/v1/runs/{id}/metrics/{name}``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lineage
from tests.integration.test_metric_buckets import reference, same
from tests.server.conftest import InProcessServer


def _check(buckets: list[dict[str, Any]], steps: list[int], given: list[float | None],
           most: int) -> None:
    """``buckets`` are the rule's, recomputed from every point of the full history."""
    values = [math.nan if v is None else v for v in given]
    assert same(buckets, reference(list(zip(steps, values, strict=True)), most))


def test_curves_from_many_blocks_and_from_few(tmp_path: Path) -> None:
    database = str(tmp_path / "curves.db")
    with lineage.Tracker(database, batch_size=7, batch_interval_s=0.001) as tracker:
        with tracker.start_run("many") as many:
            for step in range(1, 1401):
                metrics = {"loss": 1 / step if step % 97 else math.nan}
                if step % 3 == 0:
                    metrics["sparse"] = float(step % 11)
                many.log_step(step, metrics)
        tracker.flush()
    with lineage.Tracker(database) as tracker, tracker.start_run("few") as few:
        for step in range(1, 301):
            few.log_step(step, {"loss": math.sin(step)})
    server = InProcessServer(database)
    try:
        token = server.token("default", "reader", ("read",))
        headers = {"Authorization": f"Bearer {token}"}
        for run, names in ((many, ["loss", "sparse"]), (few, ["loss"])):
            found = server.http.get(f"/v1/runs/{run.id}/curves", params={"buckets": 50},
                                    headers=headers).json()
            assert sorted(found) == names
            for name in names:
                full = server.http.get(f"/v1/runs/{run.id}/metrics/{name}",
                                       headers=headers).json()
                _check(found[name], full["steps"], full["values"], 50)
                one = server.http.get(f"/v1/runs/{run.id}/metrics/{name}",
                                      params={"buckets": 50}, headers=headers)
                assert json.dumps(one.json()) == json.dumps(found[name])  # NaN spelled alike
        refused = server.http.get(f"/v1/runs/{few.id}/curves", params={"buckets": 0},
                                  headers=headers)
        assert refused.status_code == 400 and "buckets" in refused.text
    finally:
        server.stop()
