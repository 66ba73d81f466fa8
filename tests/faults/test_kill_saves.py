"""Fault injection: a PyTorch loop saving checkpoints in the background (``save_checkpoint(...,
background=True)``, retention ``keep_last=2``) is SIGKILLed at random moments: before a save
was handed over, while its file was being written or fsynced, between the rename and the
registration's commit, while retention retired or deleted.

After each kill, what was recorded must hold against the disk: every live checkpoint's file is
there, whole, with the registered SHA-256 (a registration is committed only after its file is
durable); every checkpoint retention deleted is gone; no file at a checkpoint's path is torn.
A kill may leave what it cannot avoid leaving, counted and allowed: a durable file whose
registration never committed (the user's checkpoint, unrecorded) and the hidden temporary file
of a write it cut short (``.NAME.HOST-PID.XXXX.tmp`` beside the target), which the next process's
first write into the folder removes. At the end, a restart repairs retention, the newest live
checkpoint loads (its checksum verified) into a fresh model, and a write leaves no temporary
file of the dead children behind.
"""

from __future__ import annotations

import hashlib
import random
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch
from safetensors.torch import load_file

import lineage
from lineage.integrations.torch import load_checkpoint, write_checkpoint
from tests.faults.helpers import children_stderr
from tests.faults.test_kill_background import child, kill_after

pytestmark = pytest.mark.slow

CYCLES = 6
KEEP_LAST = 2

SAVES_CHILD = textwrap.dedent(f"""
    import sys, pathlib
    import torch
    import lineage
    from lineage.integrations.torch import save_checkpoint
    url, folder, run_arg = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
    tracker = lineage.Tracker(url, batch_interval_s=0.01)
    policy = {{"strategy": "steps", "save_every": 3, "keep_last": {KEEP_LAST},
               "format": "safetensors"}}
    run = (tracker.start_run("saving", job={{"checkpoint_policy": policy}}) if run_arg == "new"
           else tracker.run_handle(run_arg))
    step = (tracker.run(run.id).last_step or 0) + 1
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 64), torch.randn(32, 8)
    print("run", run.id, flush=True)
    while True:
        loss = (model(x) - y).pow(2).mean()
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        run.log_step(step, {{"loss": loss.item()}})
        if step % 3 == 0:
            save_checkpoint(run, folder / f"{{run.id.hex[:8]}}-{{step}}.safetensors", model=model,
                            optimizer=optimizer, step=step, background=True)
            print("saved", step, flush=True)  # handed to the saves thread, maybe not done
        step += 1
""")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_against_disk(tracker: lineage.Tracker, folder: Path) -> dict[str, int]:
    """What the store says of each checkpoint holds on disk; returns what the kill left."""
    registered = set()
    for artifact in tracker.artifacts(type="checkpoint"):
        path = Path(artifact.uri.removeprefix("file://"))
        registered.add(path.name)
        if artifact.status == "live":
            assert path.exists(), f"live checkpoint {artifact.id} has no file"
            assert sha256(path) == artifact.checksum, f"{path.name} differs from its record"
        elif artifact.deletion == "deleted":
            assert not path.exists(), f"{path.name} recorded deleted, still there"
    files = {p.name for p in folder.glob("*.safetensors")}
    for name in files:  # renamed into place only once whole: no path holds a torn file
        assert load_file(str(folder / name)), f"{name} holds no tensors"
    return {"unregistered_files": len(files - registered),
            "temporary_files": len(list(folder.glob(".*.tmp")))}


def test_sigkilled_background_saves_keep_the_record_true_to_the_disk(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    script = tmp_path / "saves_child.py"
    script.write_text(SAVES_CHILD)
    run_arg, left = "new", {"unregistered_files": 0, "temporary_files": 0}
    try:
        for cycle in range(CYCLES):
            with (tmp_path / f"saves-{cycle}.err").open("w") as stderr:
                process = child(script, url, str(folder), run_arg, stderr=stderr)
                first, *_ = kill_after(process, 1 + rng.randint(1, 5), rng.uniform(0, 0.03))
            run_arg = first.split()[1] if rng.random() < 0.5 else "new"
            with lineage.Tracker(url) as look:  # before any repair
                for key, count in check_against_disk(look, folder).items():
                    left[key] = max(left[key], count)
        with lineage.Tracker(url) as tracker:
            for view in tracker.runs():
                if view.status == "running":
                    tracker.run_handle(view.id)  # the run's next start: retention's repair
            tracker.flush()
            check_against_disk(tracker, folder)
            live = [a for a in tracker.artifacts(type="checkpoint") if a.status == "live"]
            assert live, "no checkpoint was recorded in any cycle"
            newest = max(live, key=lambda a: (a.registered_at, a.step))
            model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                        torch.nn.Linear(128, 8))
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            loaded = load_checkpoint(tracker, newest.id, model, optimizer=optimizer)
            assert loaded.step == newest.step and loaded.optimizer_restored
            assert tracker.run(loaded.run.id).resumed_from == newest.run_id
            write_checkpoint(folder / "after.safetensors", model=model)  # sweeps the folder
            assert not list(folder.glob(".*.tmp")), "a killed child's temporary file is left"
    except AssertionError as error:
        stderr = children_stderr(tmp_path)
        raise AssertionError(f"seed {seed}; children's stderr: {stderr}") from error
    print(f"\nkilled background saves (seed {seed}): {CYCLES} kills, at most "
          f"{left['unregistered_files']} unregistered and {left['temporary_files']} temporary "
          "files left at once")
