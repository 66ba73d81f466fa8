"""The lineage graph's layout on the server (``projections.web_graph.laid_out``): by value,
deterministic, layers wrapped into columns, every edge by node index."""

from __future__ import annotations

import random
from typing import Any

from lineage.projections.web_graph import COLUMN_GAP, LAYER_GAP, ROW_GAP, ROWS, laid_out

RUN = "00000000-0000-4000-8000-000000000001"
DATASET = "00000000-0000-4000-8000-000000000000"


def fan(checkpoints: int) -> dict[str, Any]:
    """A dataset feeding a run that saved ``checkpoints`` checkpoints (as ``walk`` answers)."""
    ids = [f"00000000-0000-4000-8000-{k + 2:012d}" for k in range(checkpoints)]
    nodes = [{"id": DATASET, "type": "artifact", "depth": 0, "found": True,
              "artifact_type": "dataset", "uri": "file:///data/train.jsonl", "step": None,
              "status": "live"},
             {"id": RUN, "type": "trace", "depth": 1, "found": True, "label": "run sft",
              "status": "completed"},
             {"id": "00000000-0000-4000-8000-ffffffffffff", "type": "span", "depth": -1,
              "found": False},
             *({"id": i, "type": "artifact", "depth": 2, "found": True,
                "artifact_type": "checkpoint", "uri": f"file:///c/step-{k}.pt/", "step": k,
                "status": "retired" if k % 2 else "live"} for k, i in enumerate(ids))]
    edges = [{"upstream_id": DATASET, "downstream_id": RUN, "relationship": "consumed"},
             {"upstream_id": nodes[2]["id"], "downstream_id": DATASET, "relationship": "x"},
             *({"upstream_id": RUN, "downstream_id": i, "relationship": "produced"}
               for i in ids)]
    return {"root": nodes[0], "direction": "both", "depth": 2, "nodes": nodes, "edges": edges}


def test_layers_left_to_right_and_a_large_layer_wraps_into_columns() -> None:
    walk = fan(2 * ROWS + 5)
    layout = laid_out(walk)
    nodes = layout["nodes"]
    assert [node["depth"] for node in nodes[:3]] == [-1, 0, 1]  # upstream first
    span, dataset, run = nodes[:3]
    assert (span["x"], dataset["x"], run["x"]) == (0, LAYER_GAP, 2 * LAYER_GAP)
    assert (span["href"], span["label"]) == (None, "span 00000000 (not found)")
    assert (run["href"], run["kind"], run["label"]) == (f"#/runs/{RUN}", "run", "run sft")
    assert dataset["label"] == "dataset train.jsonl" and layout["root"] == 1
    checkpoints = nodes[3:]
    assert [node["label"] for node in checkpoints[:2]] == ["checkpoint @0 step-0.pt",
                                                          "checkpoint @1 step-1.pt"]
    xs = sorted({node["x"] for node in checkpoints})
    assert xs == [3 * LAYER_GAP + k * COLUMN_GAP for k in range(3)]  # 40 + 40 + 5
    first = [node["y"] for node in checkpoints if node["x"] == xs[0]]
    assert len(first) == ROWS and first == sorted(first)
    assert first[1] - first[0] == ROW_GAP and first[0] == -first[-1]  # centred
    assert layout["width"] == xs[-1] and layout["height"] == first[-1] - first[0]
    assert [node["status"] for node in checkpoints[:2]] == ["live", "retired"]
    ids = [node["id"] for node in nodes]
    assert sorted((ids[up], ids[down]) for up, down, _ in layout["edges"]) == sorted(
        (edge["upstream_id"], edge["downstream_id"]) for edge in walk["edges"])


def test_the_same_walk_in_any_order_gives_the_same_picture() -> None:
    walk = fan(30)
    shuffled = {**walk, "nodes": random.Random(7).sample(walk["nodes"], len(walk["nodes"]))}
    assert laid_out(shuffled) == laid_out(walk)
    lone = laid_out({**walk, "nodes": [walk["root"]], "edges": walk["edges"]})
    assert lone["nodes"][0]["x"] == 0 and lone["edges"] == [] and lone["height"] == 0
