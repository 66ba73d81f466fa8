"""The lineage graph as the web page draws it: a walk (``lineage_walk.walk``) laid out on the
server, so the browser only paints (no layout, no per-node work beyond drawing).

The layout is layered and deterministic: one layer per distance from the root (upstream to
the left, negative depths), and in a layer the nodes sorted by kind, step, then id. A layer of
more than ``ROWS`` nodes wraps into columns of ``ROWS`` rows, so a run's thousand checkpoints
make a block beside their run, not a line a hundred screens tall. The same walk always gives
the same positions (a test pins them), so a pasted link shows the same picture.

The answer is compact (a thousand nodes in about 220 KB, where the walk's JSON is 660 KB):
``{"root": index, "direction", "depth",
"nodes": [{"id", "kind", "label", "status", "href", "x", "y", "depth"}...],
"edges": [[upstream index, downstream index, relationship]...], "width", "height"}``; ``href``
is the node's page (``#/runs/ID`` or ``#/artifacts/ID``; None for a node not found or a span
without its run), ``x``/``y`` in layout units (the page scales them to fit).
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

ROWS = 40  # nodes per column before a layer wraps
ROW_GAP = 40  # layout units between rows
COLUMN_GAP = 36  # between the columns of one wrapped layer
LAYER_GAP = 220  # between layers


def laid_out(walk: dict[str, Any]) -> dict[str, Any]:
    """The walk's nodes placed by the module doc's rule, its edges by node index."""
    nodes = sorted(walk["nodes"], key=_order)
    placed: list[dict[str, Any]] = []
    x = 0
    for _, layer in groupby(nodes, key=lambda node: node["depth"]):
        members = list(layer)
        rows = min(len(members), ROWS)
        for k, node in enumerate(members):
            column, row = divmod(k, rows)
            placed.append(_drawn(node, x + column * COLUMN_GAP,
                                 round((row - (rows - 1) / 2) * ROW_GAP)))
        x += (len(members) - 1) // rows * COLUMN_GAP + LAYER_GAP
    index = {node["id"]: k for k, node in enumerate(placed)}
    edges = [[index[edge["upstream_id"]], index[edge["downstream_id"]], edge["relationship"]]
             for edge in walk["edges"]
             if edge["upstream_id"] in index and edge["downstream_id"] in index]
    ys = [node["y"] for node in placed]
    return {"root": index[walk["root"]["id"]], "direction": walk["direction"],
            "depth": walk["depth"], "nodes": placed, "edges": edges,
            "width": x - LAYER_GAP, "height": max(ys) - min(ys)}


def _order(node: dict[str, Any]) -> tuple[Any, ...]:
    step = node.get("step")
    return (node["depth"], _kind(node), step if step is not None else -1, node["id"])


def _kind(node: dict[str, Any]) -> str:
    if node.get("artifact_type"):
        return str(node["artifact_type"])
    return "run" if node["type"] in ("trace", "run") else str(node["type"])


def _drawn(node: dict[str, Any], x: int, y: int) -> dict[str, Any]:
    return {"id": node["id"], "kind": _kind(node), "label": _label(node),
            "status": node.get("status") or "", "href": _href(node), "x": x, "y": y,
            "depth": node["depth"]}


def _label(node: dict[str, Any]) -> str:
    if not node["found"]:
        return f"{node['type']} {node['id'][:8]} (not found)"
    if node.get("artifact_type"):
        uri = node.get("uri") or ""
        tail = next((part for part in reversed(uri.split("/")) if part), uri)
        step = node.get("step")
        return f"{node['artifact_type']}{'' if step is None else f' @{step}'} {tail}"
    return str(node.get("label") or node["id"][:8])


def _href(node: dict[str, Any]) -> str | None:
    if node["type"] in ("trace", "run"):
        return f"#/runs/{node['id']}"
    if node["type"] == "span":
        return f"#/runs/{node['trace_id']}" if node.get("trace_id") else None
    return f"#/artifacts/{node['id']}"
