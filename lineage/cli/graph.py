"""Rendering traces, lineage graphs and the audit log for people: rich trees and tables, and
Graphviz dot / Mermaid text for the lineage graph. Pure functions of query results."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from lineage.cli.format import metrics_text

STYLES = {"ok": "green", "error": "bold red", "running": "cyan", "completed": "green",
          "failed": "red", "superseded": "magenta", "corrupted": "bold red", "live": "green",
          "retired": "dim", "expired": "dim"}


def _styled(text: str, status: str | None) -> Text:
    return Text(text, style=STYLES.get(status or "", ""))


def trace_tree(graph: dict[str, Any]) -> Tree:
    trace, attributes = graph["trace"], graph["trace"]["attributes"]
    title = Text.assemble(
        ("run ", "bold"), (trace["id"], "bold"), f"  {attributes['name']}  ",
        _styled(attributes["job_status"], attributes["job_status"]),
        f"  {trace['started_at'][:19]} -> {(trace['finished_at'] or 'running')[:19]}")
    tree = Tree(title)
    if trace["parent_trace_id"]:
        tree.add(Text(f"resumed from run {trace['parent_trace_id']}", style="yellow"))
    if attributes["superseded_by"]:
        tree.add(Text(f"superseded by run {attributes['superseded_by']}", style="magenta"))
    children: dict[str | None, list[dict[str, Any]]] = {}  # rolled up as they come
    root = None
    for span in graph["spans"]:  # one pass: it may be an iterator over a long run's spans
        if root is None and span["kind"] == "run":
            root = span
        _roll(children.setdefault(span["parent_span_id"], []), span)
    for span in children.get(root["id"] if root else None, []):
        tree.add(_span_text(span))
    lost = graph["metadata"].get("lost_steps")
    if lost and lost["count"]:
        tree.add(Text(f"lost: steps {lost['from_step']}-{lost['to_step']} ({lost['count']} step "
                      f"events) logged after checkpoint step {lost['after_checkpoint_step']}, "
                      f"re-done by run {lost['resumed_as']}", style="bold yellow"))
    artifacts = tree.add(Text(f"artifacts ({len(graph['artifacts'])})", style="bold"))
    for artifact in graph["artifacts"]:
        meta = artifact["metadata"]
        artifacts.add(Text(f"{artifact['type']:<10} {artifact['uri']}  "
                           f"{(artifact['checksum'] or '')[:19]}  {meta.get('status')}"))
    return tree


def _roll(out: list[dict[str, Any]], span: dict[str, Any]) -> None:
    """Append ``span`` to ``out``, a step-range span onto a step-range span before it as one
    line, so a long run reads as a few lines."""
    previous = out[-1] if out else None
    if span["kind"] == "steps" and previous is not None and previous["kind"] == "steps":
        merged = dict(previous)
        merged["attributes"] = {**previous["attributes"],
                                "step_to": span["attributes"]["step_to"],
                                "count": previous["attributes"]["count"] + span["attributes"]["count"]}
        merged["metrics"], merged["finished_at"] = span["metrics"], span["finished_at"]
        out[-1] = merged
    else:
        out.append(span)


def _span_text(span: dict[str, Any]) -> Text:
    a = span["attributes"]
    at = span["started_at"][11:19]
    if span["kind"] == "steps":
        return Text(f"{at}  steps {a['step_from']}-{a['step_to']} ({a['count']} events)  "
                    f"{metrics_text(span['metrics'], 4)}", style="dim")
    detail = {
        "checkpoint": lambda: f"step {a.get('step_from')}  {a.get('uri')}",
        "evaluation": lambda: f"step {a.get('step_from')}  {metrics_text(span['metrics'], 4)}",
        "failure": lambda: f"{span['error_type']}: {span['error_message'] or ''}"
                           + ("  [corrupted]" if a.get("corrupted") else ""),
        "recovery": lambda: f"attempt {a.get('attempt')} ({a.get('strategy')})"
                            + (f" -> checkpoint step {a['checkpoint_step']}"
                               if "checkpoint_step" in a else "")
                            + (f" -> run {a['new_run_id']}" if "new_run_id" in a else ""),
    }.get(span["kind"], lambda: "")()
    return Text.assemble(f"{at}  ", (span["name"], "bold"), f"  {detail}  ",
                         _styled(span["status"], span["status"]))


def lineage_tree(graph: dict[str, Any]) -> Tree:
    root = graph["root"]
    tree = Tree(Text.assemble((f"{root['type']} {root['id']}", "bold"), f"  {root.get('label', '')}"))
    others = [node for node in graph["nodes"] if node["id"] != root["id"]]
    by_depth = sorted(others, key=lambda n: (abs(n["depth"]), n["depth"], n["id"]))
    for node in by_depth:
        arrow = "↑" if node["depth"] < 0 else "↓"
        tree.add(_styled(f"{arrow}{abs(node['depth'])}  {node['type']:<8} {node['id']}  "
                         f"{node.get('label', '')}  {node.get('status') or ''}", node.get("status")))
    tree.add(Text(f"{len(graph['edges'])} edges (--format dot|mermaid|json for the graph)", style="dim"))
    return tree


def dot(graph: dict[str, Any]) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for node in graph["nodes"]:
        shape = {"artifact": "box", "trace": "ellipse", "span": "diamond"}.get(node["type"], "oval")
        label = _quote(f"{node.get('label', node['type'])}\\n{node['id'][:8]}")
        lines.append(f'  "{node["id"]}" [shape={shape}, label="{label}"];')
    for edge in graph["edges"]:
        lines.append(f'  "{edge["upstream_id"]}" -> "{edge["downstream_id"]}" '
                     f'[label="{edge["relationship"]}"];')
    return "\n".join([*lines, "}"])


def mermaid(graph: dict[str, Any]) -> str:
    ids = {node["id"]: f"n{index}" for index, node in enumerate(graph["nodes"])}
    lines = ["flowchart LR"]
    for node in graph["nodes"]:
        label = _quote(f"{node.get('label', node['type'])} {node['id'][:8]}").replace('"', "'")
        lines.append(f'  {ids[node["id"]]}["{label}"]')
    for edge in graph["edges"]:
        lines.append(f"  {ids[edge['upstream_id']]} -->|{edge['relationship']}| "
                     f"{ids[edge['downstream_id']]}")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return text.replace("\\n", "\0").replace("\\", "\\\\").replace('"', '\\"').replace("\0", "\\n")


def audit_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("#", "recorded (UTC)", "actor", "kind", "subject", "summary"):
        table.add_column(column, no_wrap=column != "summary", justify="right" if column == "#" else "left")
    for row in rows:
        table.add_row(str(row["position"]), row["recorded_at"][:19].replace("T", " "), row["actor"],
                      row["kind"], f"{row['subject_type']} {row['subject_id'][:8]}", Text(row["summary"]))
    return table
