"""PyTorch integration: a tiny model trained for real on the CPU, checkpointed with
``save_checkpoint``, killed with SIGKILL, resumed with ``load_checkpoint``; what is recorded is
compared with the files on disk and with a run that was never interrupted."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

import lineage  # noqa: E402
from lineage.integrations.resources import ResourceSampler  # noqa: E402
from lineage.integrations.torch import (  # noqa: E402
    load_checkpoint,
    save_checkpoint,
    wait_for_saves,
    write_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]

# The training both the child process and the test run: the same model, data drawn from the
# global RNG each step and dropout, so a resume is exact only when the RNG state is restored.
TRAINING = """
import torch

def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    return model, optimizer, scheduler

def train_step(model, optimizer, scheduler):
    x = torch.randn(16, 8)
    loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()
"""
namespace: dict[str, Any] = {}
exec(TRAINING, namespace)
build, train_step = namespace["build"], namespace["train_step"]

CHILD = """
import sys, time
sys.path.insert(0, {root!r})
import lineage
from lineage.integrations.torch import save_checkpoint
from training import build, train_step

tracker = lineage.Tracker({db!r})
model, optimizer, scheduler = build()
run = tracker.start_run("killed", job={{"checkpoint_policy": {{"strategy": "steps", "save_every": 5}}}})
for step in range(1, 1000):
    run.log_step(step, {{"loss": train_step(model, optimizer, scheduler)}})
    if run.should_checkpoint(step):
        save_checkpoint(run, f"{folder}/step-{{step}}.safetensors", model=model,
                        optimizer=optimizer, scheduler=scheduler, step=step)
    if step == 12:
        tracker.flush()
        print(run.id, flush=True)
        time.sleep(600)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_then_resume_is_exact_and_recorded(tmp_path: Path, make_tracker: Any) -> None:
    (tmp_path / "training.py").write_text(TRAINING)
    db, folder = tmp_path / "lineage.db", tmp_path / "ckpt"
    folder.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), db=str(db), folder=str(folder)))
    child = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                             text=True)
    try:
        run_id = child.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert run_id, "the child died before its checkpoints"

    tracker = make_tracker(str(db))
    saved = tracker.artifacts(type="checkpoint", run=run_id)
    assert [a.step for a in saved] == [5, 10]
    for artifact in saved:  # the digests hashed while writing are the files' own
        path = folder / f"step-{artifact.step}.safetensors"
        assert (artifact.checksum, artifact.size) == (sha256(path), path.stat().st_size)
        assert artifact.includes_optimizer is True and artifact.format == "safetensors"
    assert saved[1].parents == [saved[0].id]
    assert [s.step for s in tracker.steps(run_id)] == list(range(1, 13))
    assert not list(folder.glob(".*.tmp"))

    latest = tracker.artifacts(run=run_id, alias="latest")[0]
    model, optimizer, scheduler = build()
    loaded = load_checkpoint(tracker, latest.id, model, optimizer=optimizer, scheduler=scheduler)
    assert (loaded.step, loaded.optimizer_restored, loaded.checkpoint.id) == (10, True, latest.id)
    resumed = loaded.run
    for step in range(11, 21):
        resumed.log_step(step, {"loss": train_step(model, optimizer, scheduler)})
    resumed.finish().wait()

    reference, ref_optimizer, ref_scheduler = build()
    for _ in range(20):
        train_step(reference, ref_optimizer, ref_scheduler)
    for name, tensor in reference.state_dict().items():  # bit for bit: RNG and Adam restored
        assert torch.equal(tensor, model.state_dict()[name]), name

    old, new = tracker.run(run_id), tracker.run(resumed.id)
    assert (old.status, old.superseded_by) == ("superseded", resumed.id)
    assert (new.resumed_from, new.resumed_checkpoint, new.start_step) == (old.id, latest.id, 10)
    assert latest.id in new.inputs and new.status == "completed"
    assert "resumed" in " ".join(tracker.artifact(latest.id).pins)  # retention keeps it


def test_checkpoint_file_holds_weights_and_state(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    model, optimizer, scheduler = build()
    sampler = ResourceSampler(interval_s=0)
    with tracker.start_run("tiny") as run:
        for step in (1, 2):
            run.log_step(step, {"loss": train_step(model, optimizer, scheduler)},
                         resources=sampler.poll())
        ref = save_checkpoint(run, tmp_path / "a.safetensors", model=model, optimizer=optimizer,
                              step=2, extra={"seen": (1, 2), "best": float("nan")}).wait()
    assert ref.checksum == sha256(tmp_path / "a.safetensors")
    view = tracker.artifact(ref.id)
    assert (view.includes_optimizer, view.metadata["scheduler"]) == (True, False)
    assert view.aliases == [f"latest@{str(run.id)[:8]}"]
    on_disk = load_file(tmp_path / "a.safetensors")  # any safetensors reader opens it
    for name, tensor in model.state_dict().items():
        assert torch.equal(on_disk[name], tensor)
    steps = tracker.steps(run.id)
    assert steps[0].resources["rss_mb"] > 0 and "cpu_percent" in steps[0].resources

    fresh, fresh_optimizer, _ = build()
    loaded = load_checkpoint(None, tmp_path / "a.safetensors", fresh, optimizer=fresh_optimizer)
    assert loaded.extra["seen"] == (1, 2) and loaded.extra["best"] != loaded.extra["best"]
    assert (loaded.run, loaded.checkpoint) == (None, None)  # nothing looked up or recorded
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 2


def test_a_changed_file_is_refused_before_the_model_is_touched(tmp_path: Path,
                                                               make_tracker: Any) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    model, optimizer, scheduler = build()
    path = tmp_path / "c.safetensors"
    with tracker.start_run("tiny") as run:
        run.log_step(1, {"loss": train_step(model, optimizer, scheduler)})
        save_checkpoint(run, path, model=model, optimizer=optimizer, step=1).wait()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the same size, another byte: bit rot
    path.write_bytes(bytes(data))
    fresh, _, _ = build()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(lineage.ChecksumMismatchError) as caught:
        load_checkpoint(tracker, path, fresh)
    assert caught.value.uri == path.as_uri()
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    assert len(tracker.runs()) == 1  # no resumed run started


def test_load_into_a_run_records_the_input_and_the_next_parent(tmp_path: Path,
                                                               make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    model, optimizer, scheduler = build()
    with tracker.start_run("first") as run:
        run.log_step(1, {"loss": train_step(model, optimizer, scheduler)})
        first = save_checkpoint(run, tmp_path / "1.safetensors", model=model, step=1).wait()
    with tracker.start_run("finetune") as second:
        loaded = load_checkpoint(tracker, tmp_path / "1.safetensors", model, into=second)
        assert loaded.run is second and loaded.optimizer_restored is False
        second.log_step(2, {"loss": train_step(model, optimizer, scheduler)})
        child = save_checkpoint(second, tmp_path / "2.safetensors", model=model, step=2).wait()
    assert tracker.artifact(child.id).parents == [first.id]
    assert first.id in tracker.run(second.id).inputs
    assert tracker.artifact(first.id).includes_optimizer is False


def test_a_failed_write_leaves_the_old_file_and_records_nothing(tmp_path: Path,
                                                                make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    model, _, _ = build()
    path = tmp_path / "c.safetensors"
    written = write_checkpoint(path, model=model, step=0)
    assert written.sha256 == sha256(path)
    broken = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4, device="meta"))
    with tracker.start_run("broken") as run:
        run.log_step(1, {"loss": 1.0})
        with pytest.raises(NotImplementedError):  # the meta tensor fails after the first ones
            save_checkpoint(run, path, model=broken, step=1)
        with pytest.raises(lineage.ValidationError, match="state/extra/fn"):
            save_checkpoint(run, path, model=model, step=1, extra={"fn": len})
    assert sha256(path) == written.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    assert tracker.artifacts(type="checkpoint") == []


def test_background_saves_land_in_order_and_report_refusals(
        tmp_path: Path, make_tracker: Any, caplog: pytest.LogCaptureFixture) -> None:
    tracker = make_tracker("memory://")
    model, optimizer, scheduler = build()
    run = tracker.start_run("background")
    pending = []
    for step in (1, 2, 3):
        run.log_step(step, {"loss": train_step(model, optimizer, scheduler)})
        pending.append(save_checkpoint(run, tmp_path / f"{step}.safetensors", model=model,
                                       optimizer=optimizer, step=step, background=True))
    wait_for_saves()
    refs = [p.wait() for p in pending]
    for step, ref in zip((1, 2, 3), refs, strict=True):
        assert ref.checksum == sha256(tmp_path / f"{step}.safetensors")
    assert [tracker.artifact(r.id).parents for r in refs] == [[], [refs[0].id], [refs[1].id]]
    run.finish().wait()
    late = save_checkpoint(run, tmp_path / "late.safetensors", model=model, step=3,
                           background=True)
    with pytest.raises(lineage.RunFinishedError):
        late.wait()
    assert not (tmp_path / "late.safetensors").exists()  # refused before it was written
    # logged too, for a loop that never waits for its saves
    until(lambda: any("late.safetensors (step 3) failed: RunFinishedError" in r.getMessage()
                      and r.levelname == "WARNING" for r in caplog.records), "a warning")


def test_finish_waits_for_the_runs_background_saves(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    model, optimizer, scheduler = build()
    with tracker.start_run("forgot to wait") as run:  # no wait_for_saves before the finish
        for step in (1, 2, 3):
            run.log_step(step, {"loss": train_step(model, optimizer, scheduler)})
            save_checkpoint(run, tmp_path / f"{step}.safetensors", model=model,
                            optimizer=optimizer, step=step, background=True)
    saved = tracker.artifacts(type="checkpoint", run=run.id)
    assert [(v.step, v.checksum) for v in saved] == [
        (step, sha256(tmp_path / f"{step}.safetensors")) for step in (1, 2, 3)]
    assert tracker.run(run.id).status == "completed"

    other = tracker.start_run("finished elsewhere")  # ended through a second handle
    other.log_step(1, {"loss": 1.0})
    tracker.run_handle(other.id).finish("cancelled").wait()  # `other` has not seen it
    pending = save_checkpoint(other, tmp_path / "orphan.safetensors", model=model, step=1,
                              background=True)
    with pytest.raises(lineage.RunFinishedError):
        pending.wait()
    assert not (tmp_path / "orphan.safetensors").exists()  # written, refused, removed
    assert tracker.artifacts(type="checkpoint", run=other.id) == []


def test_a_save_the_closed_tracker_cannot_register_keeps_its_file_and_is_logged(
        tmp_path: Path, make_tracker: Any, caplog: pytest.LogCaptureFixture) -> None:
    tracker = make_tracker("memory://")
    model, optimizer, scheduler = build()
    run = tracker.start_run("closed under it")
    run.log_step(1, {"loss": train_step(model, optimizer, scheduler)})
    tracker.close()
    pending = save_checkpoint(run, tmp_path / "kept.safetensors", model=model, step=1,
                              background=True)
    with pytest.raises(lineage.LineageError) as refused:
        pending.wait()
    assert not isinstance(refused.value, lineage.RunFinishedError)
    written = tmp_path / "kept.safetensors"
    assert written.exists()  # the user's checkpoint: durable, only not recorded
    assert load_file(str(written))  # a whole safetensors file
    until(lambda: any("kept.safetensors (step 1) failed" in r.getMessage()
                      for r in caplog.records), "a warning")


def until(condition: Any, what: str) -> None:
    """Wait for ``condition()`` (a state another thread reaches), failing after a minute."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def test_background_saves_ride_the_writers_batches(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker("memory://", batch_interval_s=3600)  # commits only when asked
    model, optimizer, scheduler = build()
    run = tracker.start_run("batched")
    for step in (1, 2, 3, 4):
        run.log_step(step, {"loss": train_step(model, optimizer, scheduler)})
    first = save_checkpoint(run, tmp_path / "0.safetensors", model=model, step=0,
                            background=True)
    first.wait()  # a wait asks the writer for a commit now (and leaves it to its pace after)
    commits = tracker.writer.stats.committed_batches
    paths = [tmp_path / f"{step}.safetensors" for step in (1, 2, 3)]
    pending = [save_checkpoint(run, path, model=model, optimizer=optimizer, step=step,
                               background=True) for step, path in enumerate(paths, 1)]
    # the saves thread wrote all three and queued their registrations without waiting for one
    until(lambda: tracker.writer.queued == 3, "three registrations queued")
    assert all(path.exists() for path in paths) and not any(p.done() for p in pending)
    assert tracker.writer.stats.committed_batches == commits  # no commit of their own
    assert pending[0].wait().checksum == sha256(paths[0])
    assert all(p.done() for p in pending)  # the same batch
    assert tracker.writer.stats.committed_batches == commits + 1
    late = save_checkpoint(run, tmp_path / "4.safetensors", model=model, step=4,
                           background=True)
    run.finish().wait()  # the finish waits for the save, asking for its commit
    assert late.done() and late.wait().step == 4
    assert [v.step for v in tracker.artifacts(type="checkpoint", run=run.id)] == [0, 1, 2, 3, 4]


def test_resource_sampler_hands_out_one_sample_per_interval() -> None:
    now, cpu = [100.0], [5.0]
    sampler = ResourceSampler(interval_s=10, clock=lambda: now[0], cpu_seconds=lambda: cpu[0])
    assert sampler.poll() is None
    now[0], cpu[0] = 110.0, 10.0  # 5 s of CPU in 10 s: half a core
    sample = sampler.poll()
    assert sample is not None and sample["cpu_percent"] == 50.0 and sample["rss_mb"] > 1
    now[0] = 115.0
    assert sampler.poll() is None and sampler.samples == 1
    with pytest.raises(lineage.ValidationError, match="interval_s"):
        ResourceSampler(interval_s=-1)


def test_a_refused_background_save_resolves_even_when_its_file_cannot_be_removed(
        tmp_path: Path, make_tracker: Any, monkeypatch: Any) -> None:
    """The clean-up after a refusal runs on the writer thread: when it fails, the save still
    ends with the refusal (no wait hangs) and the failure is only logged."""
    tracker = make_tracker("memory://")
    model, _, _ = build()
    other = tracker.start_run("finished elsewhere")
    tracker.run_handle(other.id).finish("cancelled").wait()  # `other` has not seen it
    target = tmp_path / "stuck.safetensors"
    unlink = Path.unlink

    def refuse(path: Path, missing_ok: bool = False) -> None:
        if path == target:
            raise PermissionError(13, "read-only", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    pending = save_checkpoint(other, target, model=model, step=1, background=True)
    with pytest.raises(lineage.RunFinishedError):
        pending.wait(timeout=60)
    wait_for_saves(timeout=60)
    assert target.exists()  # it could not be removed: said in the log, not hung


def test_a_refused_background_save_leaves_a_newer_file_at_its_path(tmp_path: Path,
                                                                   make_tracker: Any) -> None:
    tracker = make_tracker("memory://", batch_interval_s=3600)  # commits only when asked
    model, _, _ = build()
    other = tracker.start_run("finished elsewhere")
    tracker.run_handle(other.id).finish("cancelled").wait()
    target = tmp_path / "shared.safetensors"
    pending = save_checkpoint(other, target, model=model, step=1, background=True)
    assert pending._ran.wait(60)  # written, its registration queued (and its file noted)
    newer = tmp_path / "newer.tmp"
    newer.write_bytes(b"another save's bytes")
    os.replace(newer, target)  # what a later save to the same path does
    with pytest.raises(lineage.RunFinishedError):
        pending.wait(timeout=60)
    assert target.read_bytes() == b"another save's bytes"


# A save the disk refuses half-way: the kernel's file-size limit (RLIMIT_FSIZE, set in a child
# process so nothing else here is limited) fails the write with EFBIG once the file passes
# 64 KiB, as a full disk fails it with ENOSPC: the same OSError from the same write.
FULL_DISK = """
import json, logging, os, resource, signal, sys
sys.path.insert(0, {root!r})
import torch
import lineage
from lineage.integrations.torch import save_checkpoint
from training import build

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
folder, path = {folder!r}, {folder!r} + "/ckpt.safetensors"
tracker = lineage.Tracker("memory://")
small, optimizer, scheduler = build()  # a few KiB
large = torch.nn.Linear(256, 256)      # 257 KiB of weights
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
outcomes = []
with tracker.start_run("disk fills") as run:
    run.log_step(1, {{"loss": 1.0}})
    first = save_checkpoint(run, path, model=small, optimizer=optimizer, step=1)
    kept = open(path, "rb").read()
    for step, background in ((2, False), (3, True)):
        run.log_step(step, {{"loss": 1.0}})
        try:
            pending = save_checkpoint(run, path, model=large, step=step, background=background)
            if background:
                pending.wait(60)
            outcomes.append("saved")
        except OSError as error:
            outcomes.append(f"{{type(error).__name__}} errno {{error.errno}}")
        outcomes.append(open(path, "rb").read() == kept)
    run.log_step(4, {{"loss": 1.0}})  # the loop goes on: a save that fits is recorded
    after = save_checkpoint(run, folder + "/after.safetensors", model=small, step=4)
tracker.flush()
print(json.dumps({{"outcomes": outcomes, "files": sorted(os.listdir(folder)),
                  "steps": [v.step for v in tracker.artifacts(type="checkpoint", run=run.id)],
                  "checksums": [first.checksum, after.checksum],
                  "status": tracker.run(run.id).status}}))
"""


def test_a_save_the_disk_cannot_hold_keeps_the_old_checkpoint_and_records_nothing(
        tmp_path: Path) -> None:
    (tmp_path / "training.py").write_text(TRAINING)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK.format(root=str(ROOT), folder=str(folder))],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True,
        text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    found = json.loads(child.stdout)
    efbig = f"OSError errno {errno.EFBIG}"
    # each refused save raised the kernel's error, and the old file stayed whole at the path
    assert found["outcomes"] == [efbig, True, efbig, True]
    assert found["files"] == ["after.safetensors", "ckpt.safetensors"]  # no temporary file
    assert found["steps"] == [1, 4]  # nothing registered for the refused saves
    assert found["checksums"] == [sha256(folder / "ckpt.safetensors"),
                                  sha256(folder / "after.safetensors")]
    assert found["status"] == "completed"
    # the background save's failure was logged too, naming its file and step
    assert "ckpt.safetensors (step 3) failed: OSError" in child.stderr
