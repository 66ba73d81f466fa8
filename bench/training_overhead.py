"""What recording costs a real PyTorch training loop: the same loop with and without the
tracker, in one process, runs alternating, overhead as a share of the step time.

Each run trains a small MLP (``--hidden``, ``--batch``: steps of a few ms on a CPU) for
``--steps`` steps. The baseline does what a loop without lineage does: the step, ``loss.item()``
and a checkpoint every ``--every`` steps with ``torch.save`` (weights, optimizer, scheduler,
RNG). The tracked run adds ``run.log_step`` every step (loss, lr, grad_norm, epoch; resources
from a ``ResourceSampler`` once per ``--sample-s``) and saves its checkpoints with
``lineage.integrations.torch.save_checkpoint`` (one safetensors file, fsynced, hashed while
written, registered; retention ``keep_last=3``) on a SQLite store, in two variants: the
synchronous save (the fsyncs on the training thread) and ``background=True`` (a CPU copy on
the training thread, the rest on a background thread). Runs rotate baseline, synchronous,
background (``--pairs`` rounds, after one warm-up round; who goes first rotates); the overhead
is the median over rounds of (tracked / baseline - 1) of the run's time, the whole loop
included (checkpoints too). The time spent inside lineage calls on the training thread is printed beside
it. The device is picked here: CUDA when there is one (``--device`` to choose).

Two measures that the machine's load does not swamp sit beside the wall clock:

- process CPU: ``time.process_time`` of each run, every thread of the process (the training
  thread, the tracker's writer, retention, the save thread), the writer flushed before the run's
  clock stops; the median over rounds of tracked/baseline - 1, with its spread (min..max, and
  the quartiles). It counts the writer's work that a spare core hides from the wall clock, so
  it bounds the wall overhead from above when the machine has a core to spare.
- ``--callgrind``: the same rounds re-run under valgrind's callgrind, which counts the
  instructions the process executes in each run's loop (all threads, the writer flushed before
  the loop's count ends): deterministic whatever the load (``bench/callgrind.py``);
  ``start_run`` and ``finish`` (once a run) are counted apart. Under callgrind a step runs
  ~50x slower, so the resource sampler runs on a step clock (``--nominal-step-ms`` a step) to
  sample as often per step as it would at native speed. Instructions are not time (a fsync
  costs few instructions and much time; a cache miss costs time, not instructions): the figure
  says how much more work recording adds to the loop; the wall figures say what it costs where
  the disk waits.

Targets (issue 12): overhead <= 1 % on a CPU, <= 0.5 % on CUDA.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import callgrind
import torch
from common import Report, add_options, bench_parser, open_tracker, percentile, single_store, temp_store

from lineage.config import Settings
from lineage.integrations.resources import ResourceSampler
from lineage.integrations.torch import save_checkpoint, wait_for_saves, write_checkpoint

TARGETS = {"cpu": 1.0, "cuda": 0.5}
CALIBRATION_STEPS = 10  # steps timed under callgrind to scale the writer's batch interval
HASH_CALIBRATION = 1 << 20  # bytes hashed under callgrind, to count SHA-256 per byte
VARIANTS = ["baseline", "sync", "background"]


def pick_device(wanted: str | None) -> torch.device:
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Loop:
    """One model, optimizer and scheduler, trained on random batches made on the device."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        torch.manual_seed(0)
        width = args.hidden
        self.device = device
        self.model = torch.nn.Sequential(
            torch.nn.Linear(128, width), torch.nn.GELU(), torch.nn.Linear(width, width),
            torch.nn.GELU(), torch.nn.Linear(width, 10)).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=10_000)
        self.x = torch.randn(args.batch, 128, device=device)
        self.y = torch.randint(0, 10, (args.batch,), device=device)

    def step(self) -> tuple[float, float]:
        loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), norm.item()

    def plain_save(self, path: Path, step: int) -> None:
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "rng": torch.get_rng_state(),
                    "step": step}, path)


def baseline_run(loop: Loop, args: argparse.Namespace, folder: Path,
                 label: str) -> dict[str, float]:
    clock, thread = time.perf_counter, time.thread_time
    saving = saving_cpu = 0.0
    callgrind.mark(f"{label} open")
    process = time.process_time()
    cpu, start = thread(), clock()
    for step in range(1, args.steps + 1):
        loop.step()
        if step % args.every == 0:
            mark, mark_cpu = clock(), thread()
            loop.plain_save(folder / f"plain-{step}.pt", step)
            saving += clock() - mark
            saving_cpu += thread() - mark_cpu
    _sync(loop.device)
    result = {"wall": clock() - start, "cpu": thread() - cpu, "save": saving,
              "save_cpu": saving_cpu, "process": time.process_time() - process}
    callgrind.mark(label)
    callgrind.mark(f"{label} close")
    return result


def tracked_run(loop: Loop, args: argparse.Namespace, folder: Path, tracker: Any,
                index: int, background: bool, label: str) -> dict[str, float]:
    clock, thread = time.perf_counter, time.thread_time
    run = tracker.start_run(f"overhead-{index}", job={
        "model": "mlp", "checkpoint_policy": {"strategy": "steps", "save_every": args.every,
                                              "keep_last": 3, "format": "safetensors"}})
    sampler = ResourceSampler(interval_s=args.sample_s, clock=step_clock(args))
    logging = saving = inside_cpu = 0.0
    callgrind.mark(f"{label} open")  # start_run: once a run, not once a step
    process = time.process_time()
    cpu, start = thread(), clock()
    for step in range(1, args.steps + 1):
        loss, norm = loop.step()
        mark, mark_cpu = clock(), thread()
        run.log_step(step, {"loss": loss, "lr": loop.scheduler.get_last_lr()[0],
                            "grad_norm": norm}, epoch=step // 1000, resources=sampler.poll())
        logged = clock()
        logging += logged - mark
        if step % args.every == 0:
            save_checkpoint(run, folder / f"step-{index}-{step}.safetensors", model=loop.model,
                            optimizer=loop.optimizer, scheduler=loop.scheduler, step=step,
                            background=background)
            saving += clock() - logged
        inside_cpu += thread() - mark_cpu
    _sync(loop.device)
    mark = clock()
    wait_for_saves()  # the last background save, before the run finishes
    saving += clock() - mark
    wall, cpu = clock() - start, thread() - cpu
    tracker.flush()  # the writer's and retention's work for the steps and saves
    callgrind.mark(label)
    run.finish()
    tracker.flush()
    result = {"wall": wall, "cpu": cpu, "log": logging, "save": saving,
              "inside_cpu": inside_cpu, "process": time.process_time() - process}
    callgrind.mark(f"{label} close")  # finish: once a run
    return result


def step_clock(args: argparse.Namespace) -> Any:
    """The sampler's clock: the real one, or under callgrind one that moves
    ``--nominal-step-ms`` a call (the sampler reads it once a poll, once a step)."""
    if not args.in_callgrind:
        return time.monotonic
    ticks = itertools.count()
    return lambda: next(ticks) * args.nominal_step_ms / 1000


def writer_settings(args: argparse.Namespace, loop: Loop) -> argparse.Namespace:
    """The tracker's settings. Under callgrind with ``--writer-clock scaled`` the writer's
    ``batch_interval_s`` (the default, or ``--batch-interval``) is multiplied by how much
    slower a step runs here than ``--nominal-step-ms`` (timed over a few steps now), so the
    writer commits as many steps at a time as at native speed; ``native`` keeps it as set (a
    commit about every step under callgrind: per-commit work overcounted)."""
    if not args.in_callgrind or args.writer_clock == "native":
        return args
    loop.step()
    start = time.perf_counter()
    for _ in range(CALIBRATION_STEPS):
        loop.step()
    slowdown = (time.perf_counter() - start) * 1000 / CALIBRATION_STEPS / args.nominal_step_ms
    interval = (args.batch_interval or Settings.load().batch_interval_s) * max(1.0, slowdown)
    print(f"callgrind: a step {slowdown:.0f}x slower than {args.nominal_step_ms} ms: "
          f"batch_interval_s {interval:.3f}", flush=True)
    return argparse.Namespace(**{**vars(args), "batch_interval": interval})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(report: Report, args: argparse.Namespace, url: str) -> dict[str, list[dict[str, float]]]:
    """Run the rounds; report the figures (not under callgrind); returns each run's results."""
    device = pick_device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    loop = Loop(args, device)
    params = sum(p.numel() for p in loop.model.parameters())
    report.section(f"{device.type}: MLP {params:,} parameters, batch {args.batch}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report.note(f"device {device} ({name}); torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads; {args.steps} steps a run, a checkpoint "
                f"every {args.every}, {args.pairs} rounds after 1 warm-up round")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="lineage_bench_ckpt_") as temp:
        folder = Path(temp)
        callgrind.mark("setup")
        if args.in_callgrind:
            hashlib.sha256(bytes(HASH_CALIBRATION)).hexdigest()
            callgrind.mark("sha256 calibration")
        tracker = open_tracker(url, writer_settings(args, loop))
        try:
            for pair in range(args.pairs + 1):
                shift = pair % len(VARIANTS)  # who goes first rotates
                for name in VARIANTS[shift:] + VARIANTS[:shift]:
                    label = name if pair > 0 else "warm-up"
                    result = (baseline_run(loop, args, folder, label) if name == "baseline" else
                              tracked_run(loop, args, folder, tracker, pair,
                                          name == "background", label))
                    if pair > 0:
                        results[name].append(result)
        finally:
            tracker.close()
    if args.in_callgrind:
        return results
    for name in VARIANTS[1:]:
        report.section(f"{device.type}: {name} saves "
                       + ("(save_checkpoint(background=True))" if name == "background"
                          else "(save_checkpoint, synchronous: fsync on the training thread)"))
        figures(report, args, device, results["baseline"], results[name])
    return results


def figures(report: Report, args: argparse.Namespace, device: torch.device,
            baselines: list[dict[str, float]], tracked: list[dict[str, float]]) -> None:
    per_step = 1000 / args.steps
    saves = max(1, args.steps // args.every)
    target = TARGETS.get(device.type, 1.0)
    pairs = list(zip(tracked, baselines, strict=True))
    wall = [100 * (t["wall"] / b["wall"] - 1) for t, b in pairs]
    cpu = [100 * (t["cpu"] / b["cpu"] - 1) for t, b in pairs]
    # the training thread's extra time: log_step and the sampler, and what a checkpoint costs
    # beyond the baseline's own torch.save (the baseline saves too)
    direct = [100 * (t["log"] + t["save"] - b["save"]) / b["wall"] for t, b in pairs]
    report.figure("baseline step (median)",
                  statistics.median(b["wall"] * per_step for b in baselines), "ms", fmt="{:,.3f}")
    report.figure("tracked step (median)",
                  statistics.median(t["wall"] * per_step for t in tracked), "ms", fmt="{:,.3f}")
    report.figure("overhead, wall (median)", statistics.median(wall), "%", fmt="{:,.2f}",
                  target=("<=", target), note="tracked/baseline - 1 of whole runs, rounds: "
                  + " ".join(f"{r:+.1f}" for r in wall))
    report.figure("overhead, thread CPU", statistics.median(cpu), "%", fmt="{:,.2f}",
                  note="the training thread's CPU time: blind to other processes' load")
    process = [100 * (t["process"] / b["process"] - 1) for t, b in pairs]
    report.figure("overhead, process CPU", statistics.median(process), "%", fmt="{:,.2f}",
                  target=("<=", target), note="all threads, writer flushed; " + spread(process))
    report.figure("overhead, timed calls", statistics.median(direct), "%", fmt="{:,.2f}",
                  target=("<=", target), note="log_step + sampler + (save_checkpoint - torch.save)")
    inside_cpu = [100 * (t["inside_cpu"] - b["save_cpu"]) / b["cpu"] for t, b in pairs]
    report.figure("overhead, CPU in calls", statistics.median(inside_cpu), "%", fmt="{:,.2f}",
                  note="the same calls' CPU time on the training thread, over the baseline's")
    report.figure("log_step + sampler", statistics.median(
        t["log"] * 1e6 / args.steps for t in tracked), "us/step", fmt="{:,.2f}")
    report.figure("save_checkpoint", statistics.median(t["save"] * 1e3 / saves for t in tracked),
                  "ms each", fmt="{:,.2f}", note="on the training thread")
    report.figure("torch.save (baseline)", statistics.median(
        b["save"] * 1e3 / saves for b in baselines), "ms each", fmt="{:,.2f}", note="no fsync")


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"rounds {ordered[0]:+.2f}..{ordered[-1]:+.2f}, quartiles "
            f"{percentile(ordered, 25):+.2f}..{percentile(ordered, 75):+.2f}")


def instructions(report: Report, args: argparse.Namespace, native: dict[str, Any]) -> None:
    """The rounds again under callgrind (this script in a child process, once per
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
            counts = callgrind.run(Path(__file__), child, Path(folder), timeout_s=3600)
        instruction_figures(report, args, counts, clock, nominal, native)


def instruction_figures(report: Report, args: argparse.Namespace, counts: dict[str, list[int]],
                        clock: str, nominal: float, native: dict[str, Any]) -> None:
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
    for name in VARIANTS[1:]:
        pairs = list(zip(counts[name], counts["baseline"], strict=True))
        ratios = [100 * (t / b - 1) for t, b in pairs]
        report.figure(f"overhead, instructions ({name})", statistics.median(ratios), "%",
                      fmt="{:,.2f}", target=("<=", TARGETS["cpu"]),
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


def native_hashing(report: Report, native: dict[str, Any]) -> None:
    """What SHA-256 of one checkpoint costs natively, beside the step time."""
    size = int(native.get("ckpt_bytes", 0))
    if not size:
        return
    data = bytes(size)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        times.append(time.perf_counter() - start)
    hash_ms = min(times) * 1000
    report.figure("SHA-256 of a checkpoint (native)", hash_ms, "ms", fmt="{:,.2f}",
                  note=f"{size / 1e6:.2f} MB at {size / 1e6 / hash_ms:,.2f} GB/s, "
                       f"{hash_ms / native['step_ms']:.2f} of the fastest baseline step "
                       f"({native['step_ms']:.3f} ms)")


def checkpoint_bytes(args: argparse.Namespace) -> int:
    """The size of one tracked checkpoint of this loop (written once, to a temporary folder)."""
    loop = Loop(args, torch.device("cpu"))
    loop.step()  # the optimizer's state exists from the first step on
    with tempfile.TemporaryDirectory(prefix="lineage_bench_size_") as folder:
        return write_checkpoint(Path(folder) / "size.safetensors", model=loop.model,
                                optimizer=loop.optimizer, scheduler=loop.scheduler, step=1).size


def load_note(report: Report, when: str) -> None:
    one, five, fifteen = os.getloadavg()
    report.note(f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} "
                f"({os.cpu_count()} CPUs)")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False, steps=300, steps_help="steps a run")
    add_options(parser, pairs=(8, "rounds of baseline, synchronous, background runs"),
                every=(100, "checkpoint every N steps"), hidden=(256, "MLP width"),
                batch=(32, "batch size"),
                sample_s=(1.0, "resource sampler interval in seconds"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on the CPU (1: the training thread has one core, "
                             "the tracker's writer may use the other; 0: torch's default)")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions under valgrind's callgrind (minutes)")
    parser.add_argument("--callgrind-steps", type=int, default=200,
                        help="steps a run under callgrind (200)")
    parser.add_argument("--callgrind-rounds", type=int, default=2,
                        help="rounds under callgrind (2; the counts repeat)")
    parser.add_argument("--nominal-step-ms", type=float, default=None,
                        help="under callgrind, the step time the sampler's clock and the "
                             "writer's batching follow (default: the fastest native baseline "
                             "step, 3 when no native rounds ran; give it under load)")
    parser.add_argument("--writer-clock", choices=["scaled", "native", "both"], default="both",
                        help="under callgrind, the writer's batch interval scaled to the "
                             "nominal step, as set, or both, one child each (both)")
    parser.add_argument("--in-callgrind", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    random.seed(0)
    if args.in_callgrind:  # the child: run the rounds, marking each run; no report
        child = Report.start("bench/training_overhead.py under callgrind")
        with temp_store(single_store(args), args, child) as store:
            bench(child, args, store.url)
        return
    report = Report.start("bench/training_overhead.py: lineage's cost in a PyTorch loop")
    load_note(report, "at the start")
    native: dict[str, Any] = {"ckpt_bytes": checkpoint_bytes(args)}
    if args.pairs > 0:
        with temp_store(single_store(args), args, report) as store:
            results = bench(report, args, store.url)
        # the least disturbed baseline run: the machine's load only ever slows a step down
        native["step_ms"] = min(r["wall"] * 1000 / args.steps for r in results["baseline"])
        native_hashing(report, native)
    load_note(report, "after the native rounds")
    if args.callgrind:
        instructions(report, args, native)
        load_note(report, "after callgrind")
    report.finish(args.json)


if __name__ == "__main__":
    main()
