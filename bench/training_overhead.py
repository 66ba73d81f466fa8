"""What recording costs a real PyTorch training loop: the same loop with and without the
tracker, in one process, runs alternating, overhead as a share of the step time.

Each run trains a small MLP (``--hidden`` 256, ``--batch`` 256: steps of about 2 ms on one CPU
core) for ``--steps`` steps. The baseline does what a loop without lineage does: the step,
``loss.item()`` and a checkpoint every ``--every`` steps with ``torch.save`` (weights,
optimizer, scheduler, RNG), deleting the files beyond the newest ``--keep-last`` by hand. The
tracked run adds ``run.log_step`` every step (loss, lr, grad_norm, epoch; resources from a
``ResourceSampler`` once per ``--sample-s``) and saves its checkpoints with
``lineage.integrations.torch.save_checkpoint`` (one safetensors file, fsynced, hashed while
written, registered; retention ``keep_last`` retires and deletes the older ones, as in a long
run) on a SQLite store, in two kinds: the synchronous save (the fsyncs on the training thread)
and ``background=True`` (a CPU copy on the training thread, the rest on a background thread);
each kind on its own store. ``--intervals 0.05,0.25`` replaces the two kinds by background
saves under each writer batch interval, side by side.

A save falls in the middle of each ``--every`` steps (steps 50, 150, 250 of 300): one save per
interval as a loop saving at steps 100, 200, 300 does, but the last one is not left for the
clock to wait on at the end of the run, where it would be as synchronous as the synchronous
kind: a long run waits for its last save once. Every save is still waited for before the clock
stops, so the figure stays conservative. Both kinds of run read the same clocks at the same
places. Runs alternate (``--pairs`` rounds, after one warm-up round, in orders where each kind
follows each other kind equally often: ``balanced_orders``); the
overhead is the median over rounds of (tracked / baseline - 1) of the run's time, the whole
loop included (checkpoints too), with the rounds' quartiles and a bootstrap 90 % interval of
that median (``overhead_figures``): on a shared machine single rounds swing by tens of percent.
The time spent inside lineage calls on the training thread is printed beside it. The device is
picked here: CUDA when there is one (``--device`` to choose).

Two measures that the machine's load does not swamp sit beside the wall clock:

- process CPU: ``time.process_time`` of each run, every thread of the process (the training
  thread, the tracker's writer, retention, the save thread), the writer and retention settled
  after the run's wall clock stops; the median over rounds of tracked/baseline - 1, with its
  spread. It counts the writer's work that a spare core hides from the wall clock, so
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
import contextlib
import hashlib
import itertools
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import callgrind
import torch
from common import Report, add_options, bench_parser, open_tracker, single_store, temp_store
from overhead_figures import figures
from thread_cpu import report_threads, spent, thread_cpu
from training_instructions import HASH_CALIBRATION, instructions

from lineage.config import Settings
from lineage.integrations.resources import ResourceSampler
from lineage.integrations.torch import save_checkpoint, wait_for_saves, write_checkpoint

TARGETS = {"cpu": 1.0, "cuda": 0.5}
CALIBRATION_STEPS = 10  # steps timed under callgrind to scale the writer's batch interval


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


def timed_loop(loop: Loop, args: argparse.Namespace, log: Any, save: Any, wait: Any,
               settle: Any) -> dict[str, float]:
    """One run of ``--steps`` steps, the same clock reads for every kind of run: ``log(step,
    loss, grad_norm)`` after each step, ``save(step)`` in the middle of each ``--every`` steps
    (one save per interval, the last one well before the end), ``wait()`` for the saves before
    the clock stops (inside the run's time), ``settle()`` after it (outside the wall time,
    inside the process CPU time)."""
    clock, thread = time.perf_counter, time.thread_time
    logging = saving = inside_cpu = 0.0
    middle = args.every // 2
    process = time.process_time()
    cpu, start = thread(), clock()
    for step in range(1, args.steps + 1):
        loss, norm = loop.step()
        mark, mark_cpu = clock(), thread()
        log(step, loss, norm)
        logged = clock()
        logging += logged - mark
        if step % args.every == middle:
            save(step)
            saving += clock() - logged
        inside_cpu += thread() - mark_cpu
    _sync(loop.device)
    mark = clock()
    wait()
    saving += clock() - mark
    wall, cpu = clock() - start, thread() - cpu
    settle()
    return {"wall": wall, "cpu": cpu, "log": logging, "save": saving, "inside_cpu": inside_cpu,
            "process": time.process_time() - process}


def baseline_run(loop: Loop, args: argparse.Namespace, folder: Path,
                 label: str) -> dict[str, float]:
    """The loop without lineage: ``torch.save``, and the files beyond ``--keep-last`` deleted
    by hand (what the tracked run's retention does)."""
    kept: list[Path] = []

    def save(step: int) -> None:
        kept.append(folder / f"plain-{step}.pt")
        loop.plain_save(kept[-1], step)
        while len(kept) > args.keep_last:
            kept.pop(0).unlink()

    callgrind.mark(f"{label} open")
    result = timed_loop(loop, args, _nothing, save, _nothing, _nothing)
    callgrind.mark(label)
    callgrind.mark(f"{label} close")
    return result


def _nothing(*_: Any) -> None:
    return None


def tracked_run(loop: Loop, args: argparse.Namespace, folder: Path, tracker: Any,
                index: int, background: bool, label: str) -> dict[str, float]:
    run = tracker.start_run(f"overhead-{index}", job={
        "model": "mlp", "checkpoint_policy": {"strategy": "steps", "save_every": args.every,
                                              "keep_last": args.keep_last,
                                              "format": "safetensors"}})
    sampler = ResourceSampler(interval_s=args.sample_s, clock=step_clock(args))

    def log(step: int, loss: float, norm: float) -> None:
        run.log_step(step, {"loss": loss, "lr": loop.scheduler.get_last_lr()[0],
                            "grad_norm": norm}, epoch=step // 1000, resources=sampler.poll())

    def save(step: int) -> None:
        save_checkpoint(run, folder / f"step-{index}-{step}.safetensors", model=loop.model,
                        optimizer=loop.optimizer, scheduler=loop.scheduler, step=step,
                        background=background)

    callgrind.mark(f"{label} open")  # start_run: once a run, not once a step
    threads, commits = thread_cpu(), tracker.writer.stats.committed_batches
    # wait: the last background save; settle: the writer's and retention's work for the run
    result = timed_loop(loop, args, log, save, wait_for_saves, tracker.flush)
    result.update(spent(threads, thread_cpu()),
                  commits=tracker.writer.stats.committed_batches - commits)
    callgrind.mark(label)
    run.finish()
    tracker.flush()
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


def kinds(args: argparse.Namespace) -> list[tuple[str, bool, float | None]]:
    """The tracked kinds of run: (name, background saves, the writer's batch interval: None for
    the default or ``--batch-interval``); with ``--intervals``, background saves at each."""
    if args.intervals:
        return [(f"background, batch_interval_s {i:g}", True, i) for i in args.intervals]
    return [("sync", False, None), ("background", True, None)]


def bench(report: Report, args: argparse.Namespace,
          urls: list[str]) -> dict[str, list[dict[str, float]]]:
    """Run the rounds, each tracked kind on its own store (``urls``: one a kind); report the
    figures (not under callgrind); returns each run's results."""
    device = pick_device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    loop = Loop(args, device)
    params = sum(p.numel() for p in loop.model.parameters())
    report.section(f"{device.type}: MLP {params:,} parameters, batch {args.batch}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report.note(f"device {device} ({name}); torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads; {args.steps} steps a run, a checkpoint "
                f"every {args.every} (mid-interval), keep_last {args.keep_last}; {args.pairs} "
                "rounds after 1 warm-up round")
    tracked = kinds(args)
    names = ["baseline", *(kind[0] for kind in tracked)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="lineage_bench_ckpt_") as temp, \
            contextlib.ExitStack() as trackers:
        folder = Path(temp)
        callgrind.mark("setup")
        if args.in_callgrind:
            hashlib.sha256(bytes(HASH_CALIBRATION)).hexdigest()
            callgrind.mark("sha256 calibration")
        settings = writer_settings(args, loop)
        opened = {name: trackers.enter_context(open_tracker(url, settings if interval is None
                                                             else argparse.Namespace(**{
                                                                 **vars(args),
                                                                 "batch_interval": interval})))
                  for (name, _, interval), url in zip(tracked, urls, strict=True)}
        background = {name: saves for name, saves, _ in tracked}
        orders = balanced_orders(names)
        for pair in range(args.pairs + 1):
            for name in orders[pair % len(orders)]:
                label = name if pair > 0 else "warm-up"
                result = (baseline_run(loop, args, folder, label) if name == "baseline" else
                          tracked_run(loop, args, folder, opened[name], pair, background[name],
                                      label))
                if pair > 0:
                    results[name].append(result)
    if args.in_callgrind:
        return results
    for name, saves, _ in tracked:
        report.section(f"{device.type}: {name} saves " + (
            "(save_checkpoint(background=True))" if saves
            else "(save_checkpoint, synchronous: fsync on the training thread)"))
        saves = max(1, args.steps // args.every)
        figures(report, args.steps, saves, TARGETS.get(device.type, 1.0), results["baseline"],
                results[name])
        report_threads(report, results[name], saves)
    return results


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


def balanced_orders(names: list[str]) -> list[list[str]]:
    """Run orders for successive rounds in which each kind follows each other kind equally
    often (a Williams design: what a run leaves behind, dirty pages or a busy thread, does not
    fall on one kind more than another): ``n`` orders for an even number of kinds, ``2n`` for
    an odd one."""
    n = len(names)
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    orders = [[names[(i + shift) % n] for i in first] for shift in range(n)]
    return orders + ([order[::-1] for order in orders] if n % 2 else [])


@contextlib.contextmanager
def temp_stores(args: argparse.Namespace, report: Report) -> Iterator[list[str]]:
    """One fresh store for each tracked kind of run (``kinds``)."""
    with contextlib.ExitStack() as stores:
        yield [stores.enter_context(temp_store(single_store(args), args, report)).url
               for _ in kinds(args)]


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
    add_options(parser, pairs=(24, "rounds of baseline, synchronous, background runs"),
                every=(100, "checkpoint every N steps"), hidden=(256, "MLP width"),
                batch=(256, "batch size"), keep_last=(1, "checkpoints kept (retention)"),
                sample_s=(1.0, "resource sampler interval in seconds"))
    parser.add_argument("--intervals", type=lambda text: [float(x) for x in text.split(",")],
                        default=None, help="writer batch intervals in seconds, comma-separated "
                        "(0.05,0.25): background saves at each, side by side, instead of the "
                        "synchronous and background kinds")
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
        with temp_stores(args, child) as urls:
            bench(child, args, urls)
        return
    report = Report.start("bench/training_overhead.py: lineage's cost in a PyTorch loop")
    load_note(report, "at the start")
    native: dict[str, Any] = {"ckpt_bytes": checkpoint_bytes(args)}
    if args.pairs > 0:
        with temp_stores(args, report) as urls:
            results = bench(report, args, urls)
        # the least disturbed baseline run: the machine's load only ever slows a step down
        native["step_ms"] = min(r["wall"] * 1000 / args.steps for r in results["baseline"])
        native_hashing(report, native)
    load_note(report, "after the native rounds")
    if args.callgrind:
        instructions(report, args, native, Path(__file__), TARGETS["cpu"])
        load_note(report, "after callgrind")
    report.finish(args.json)


if __name__ == "__main__":
    main()
