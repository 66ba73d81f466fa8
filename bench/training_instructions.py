"""``training_overhead.py --callgrind``: the rounds again under valgrind's callgrind, in a child
process (``bench/callgrind.py``), counted in instructions: tracked (synchronous and background
saves) against baseline, deterministic whatever the load (the script's doc says more)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import callgrind
from common import Report

HASH_CALIBRATION = 1 << 20  # bytes hashed under callgrind, to count SHA-256 per byte


def instructions(report: Report, args: argparse.Namespace, native: dict[str, Any],
                 script: Path, target: float) -> None:
    """The rounds again under callgrind (``script`` in a child process, once per
    ``--writer-clock``): instructions a run executes, tracked against baseline. ``native``:
    the fastest native baseline step (ms, when they ran) and the checkpoint's size (bytes)."""
    why = callgrind.available()
    if why is not None:
        report.note(f"callgrind: not measured ({why})")
        return
    nominal = args.nominal_step_ms or native.get("step_ms") or 3.0
    for clock in (["scaled", "native"] if args.writer_clock == "both" else [args.writer_clock]):
        child = ["--in-callgrind", "--steps", str(args.callgrind_steps), "--every",
                 str(min(args.every, args.callgrind_steps)), "--pairs",
                 str(args.callgrind_rounds), "--hidden", str(args.hidden), "--batch",
                 str(args.batch), "--device", "cpu", "--threads", "1", "--sample-s",
                 str(args.sample_s), "--nominal-step-ms", f"{nominal:.4f}", "--writer-clock",
                 clock, *(["--batch-interval", str(args.batch_interval)]
                          if args.batch_interval else [])]
        with tempfile.TemporaryDirectory(prefix="lineage_callgrind_") as folder:
            counts = callgrind.run(script, child, Path(folder), timeout_s=3600)
        instruction_figures(report, args, counts, clock, nominal, native, target)


def instruction_figures(report: Report, args: argparse.Namespace, counts: dict[str, list[int]],
                        clock: str, nominal: float, native: dict[str, Any],
                        target: float) -> None:
    steps = args.callgrind_steps
    every = min(args.every, steps)
    writer = (f"writer batch interval scaled to a {nominal:.2f} ms step" if clock == "scaled"
              else "writer batch interval as set (under callgrind: a commit about every step)")
    report.section(f"cpu under callgrind: instructions, {steps} steps a run, a checkpoint every "
                   f"{every}, {args.callgrind_rounds} round(s); {writer}")
    report.figure("baseline", statistics.median(counts["baseline"]) / steps, "instr/step",
                  fmt="{:,.0f}", note="rounds: " + " ".join(f"{c / steps:,.0f}"
                                                            for c in counts["baseline"]))
    per_byte = counts["sha256 calibration"][0] / HASH_CALIBRATION
    hashing = per_byte * native.get("ckpt_bytes", 0) * (steps // every)
    for name in ("sync", "background"):
        pairs = list(zip(counts[name], counts["baseline"], strict=True))
        ratios = [100 * (t / b - 1) for t, b in pairs]
        report.figure(f"overhead, instructions ({name})", statistics.median(ratios), "%",
                      fmt="{:,.2f}", target=("<=", target),
                      note=f"+{statistics.median((t - b) / steps for t, b in pairs):,.0f} "
                           "instr/step; the loop, writer flushed; rounds "
                           + " ".join(f"{r:+.3f}" for r in ratios))
        if hashing:
            report.figure(f"  of which SHA-256 ({name})",
                          statistics.median(100 * hashing / b for _, b in pairs), "%",
                          fmt="{:,.2f}", note=f"{per_byte:.1f} instr/byte under valgrind (no "
                          "SHA extensions there) x the checkpoint's bytes, once a save")
        fixed = [o + c for o, c in zip(counts[f"{name} open"], counts[f"{name} close"],
                                       strict=True)]
        report.figure(f"start_run + finish ({name})", statistics.median(fixed) / 1e6,
                      "M instr a run", fmt="{:,.1f}", note="once a run, outside the loop")
