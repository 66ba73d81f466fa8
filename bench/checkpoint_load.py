"""What loading a checkpoint costs: peak memory and time of ``load_checkpoint`` against the
read it replaced, in the same run.

A model of ``--layers`` square ``--width`` linear layers (float32, with AdamW's state after one
step: the file is about 3x the weights) is written once with ``write_checkpoint``. Each load
runs in a fresh child process (so one load's peak does not hide the next), which builds the
same model and optimizer, then loads the file into them and reports the growth of its peak RSS
across the load (``ru_maxrss``) and the load's wall time. Two ways, alternating for
``--rounds`` rounds: ``load_checkpoint`` (one pass straight into the tensors, hashed as read)
and the baseline, what it did before (the file's bytes read whole, hashed, then
``safetensors.torch.load`` of them, then the same restore). The file is in the page cache
after the first read, so the times are memory-bound, not disk-bound. Prints the medians, the
growth as a multiple of the file's size, and the ratio new / baseline. Needs torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, Report, add_options, bench_parser

CHILD = """
import hashlib, json, resource, struct, sys, time
sys.path.insert(0, {root!r})
import torch
from lineage.integrations import torch_file
from lineage.integrations.torch import load_checkpoint

def build():
    model = torch.nn.Sequential(*[torch.nn.Linear({width}, {width}) for _ in range({layers})])
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, {width})).sum().backward()
    optimizer.step()
    return model, optimizer

def baseline(path, model, optimizer):  # the read load_checkpoint made before 2026-12-02
    from safetensors.torch import load
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    (length,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8:8 + length])["__metadata__"]
    tensors = load(data)
    state = torch_file.unflatten(json.loads(meta["lineage.state"]), tensors)
    model.load_state_dict(torch_file.weights_of(tensors))
    optimizer.load_state_dict(state["optimizer"])

from pathlib import Path
path = Path({path!r})
model, optimizer = build()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if {way!r} == "load_checkpoint":
    load_checkpoint(None, path, model, optimizer=optimizer, restore_rng=False)
else:
    baseline(path, model, optimizer)
took = time.perf_counter() - start
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(grew, took)
"""

WAYS = ("load_checkpoint", "baseline")


def one_load(args: argparse.Namespace, path: Path, way: str) -> tuple[int, float]:
    code = CHILD.format(root=str(ROOT), width=args.width, layers=args.layers, path=str(path),
                        way=way)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    grew, took = done.stdout.split()
    return int(grew), float(took)


def bench(report: Report, args: argparse.Namespace, folder: Path) -> None:
    import torch

    from lineage.integrations.torch import write_checkpoint

    width, layers = args.width, args.layers
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, width)).sum().backward()
    optimizer.step()
    path = folder / "model.safetensors"
    written = write_checkpoint(path, model=model, optimizer=optimizer, rng=False)
    size = written.size
    report.section(f"a {size / 2**20:,.1f} MiB checkpoint ({layers} x Linear({width}, {width}) "
                   "+ AdamW state)")
    results: dict[str, list[tuple[int, float]]] = {way: [] for way in WAYS}
    one_load(args, path, "load_checkpoint")  # warm-up: the file into the page cache
    for round_ in range(args.rounds):
        for way in WAYS if round_ % 2 == 0 else reversed(WAYS):
            results[way].append(one_load(args, path, way))
    medians = {}
    for way in WAYS:
        grew = statistics.median(g for g, _ in results[way])
        took = statistics.median(t for _, t in results[way])
        medians[way] = (grew, took)
        report.figure(f"{way}: peak growth", grew / 2**20, "MiB",
                      note=f"{grew / size:.2f}x the file")
        report.figure(f"{way}: time", took * 1000, "ms",
                      note=f"{size / took / 2**20:,.0f} MiB/s")
    report.figure("peak growth, new / baseline",
                  medians["load_checkpoint"][0] / medians["baseline"][0], "x", fmt="{:.2f}")
    report.figure("time, new / baseline",
                  medians["load_checkpoint"][1] / medians["baseline"][1], "x", fmt="{:.2f}")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False)
    add_options(parser, width=(2048, "the layers' width"), layers=(4, "layers"),
                rounds=(5, "rounds, each loading both ways"))
    args = parser.parse_args()
    report = Report.start("bench/checkpoint_load.py: load_checkpoint's peak memory and time")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        bench(report, args, Path(folder))
    report.finish(args.json)


if __name__ == "__main__":
    main()
