"""Hugging Face Trainer with ``LineageCallback``: a tiny GPT-2 built from a config (nothing
downloaded) trained for real on the CPU, checkpointed, interrupted by an exception, resumed with
``resume_from_checkpoint``; the records are compared with the folders on disk and with what
the Trainer itself says (its best checkpoint, its deletions)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lineage.application.monitor import LocalRunStatusSource  # noqa: E402
from lineage.integrations.background_saves import SAVES  # noqa: E402
from lineage.integrations.files import MANIFEST_NAME  # noqa: E402
from lineage.integrations.hf import LineageCallback  # noqa: E402
from lineage.integrations.hf_spec import job_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 64, (count, 16), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class FailAt(transformers.TrainerCallback):  # type: ignore[misc]
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise RuntimeError(f"worker lost at step {self.step}")


def tiny_model() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1,
                                     n_head=2)
    return transformers.GPT2LMHeadModel(config)


def arguments(folder: Path, **overrides: Any) -> Any:
    settings: dict[str, Any] = dict(
        output_dir=str(folder), max_steps=6, per_device_train_batch_size=4, learning_rate=1e-3,
        logging_steps=1, save_steps=2, save_total_limit=2, eval_strategy="steps", eval_steps=2,
        metric_for_best_model="loss", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0)
    settings.update(overrides)
    return transformers.TrainingArguments(**settings)


def trainer(folder: Path, callbacks: list[Any], **overrides: Any) -> Any:
    return transformers.Trainer(model=tiny_model(), args=arguments(folder, **overrides),
                                train_dataset=Tokens(24, 1), eval_dataset=Tokens(8, 2),
                                callbacks=callbacks)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_folders(tracker: Any, run_id: Any) -> dict[int, Any]:
    """Every registered checkpoint: live with its manifest equal to the folder on disk, or
    retired with its deletion recorded once the Trainer removed the folder."""
    tracker.flush()
    by_step = {}
    for view in tracker.artifacts(type="checkpoint", run=run_id):
        manifest = Path(view.metadata["directory"]) / MANIFEST_NAME
        if manifest.parent.exists():
            assert view.status == "live" and view.checksum == sha256(manifest)
            for entry in json.loads(manifest.read_text())["files"]:
                assert entry["sha256"] == sha256(manifest.parent / entry["path"])
        else:
            assert (view.status, view.deletion) == ("retired", "already_gone"), view
        by_step[view.step] = view
    return by_step


def test_trainer_run_is_recorded(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    callback = LineageCallback(tracker, strict=True, sample_every_s=0)
    hf = trainer(tmp_path / "out", [callback])
    hf.train()
    run = tracker.runs()[0]
    assert (run.status, run.steps, run.evaluations) == ("completed", 6, 3)
    policy = run.job["checkpoint_policy"]
    assert (policy["strategy"], policy["save_every"], policy.get("keep_last")) == ("steps", 2, None)
    assert run.job["metadata"]["save_total_limit"] == 2  # the Trainer rotates, not lineage
    assert (policy["best_metric"], policy["best_mode"]) == ("eval_loss", "min")
    assert run.job["model"] == "gpt2" and run.job["learning"]["learning_rate"] == 1e-3
    steps = tracker.steps(run.id)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "grad_norm", "learning_rate", "epoch"} <= set(steps[0].metrics)
    assert steps[0].resources["rss_mb"] > 0

    saved = check_folders(tracker, run.id)
    assert sorted(saved) == [2, 4, 6] and all(v.includes_optimizer for v in saved.values())
    gone = [step for step in saved if not (tmp_path / "out" / f"checkpoint-{step}").exists()]
    assert gone and all(saved[s].status == "retired" for s in gone)  # save_total_limit=2
    best_step = int(hf.state.best_model_checkpoint.rsplit("-", 1)[1])
    assert tracker.run(run.id).best_checkpoint == saved[best_step].id


def test_interrupted_then_resumed_from_checkpoint(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    first = LineageCallback(tracker, strict=True)
    with pytest.raises(RuntimeError) as caught:
        trainer(tmp_path / "out", [first, FailAt(5)]).train()
    sys.excepthook(caught.type, caught.value, caught.tb)  # what Python does when uncaught
    failed = tracker.runs()[0]
    assert (failed.status, failed.failures) == ("failed", 1)
    assert "worker lost at step 5" in tracker.run(failed.id).status_reason
    assert sys.excepthook is not first._excepthook  # the hook is put back

    second = LineageCallback(tracker, strict=True)
    hf = trainer(tmp_path / "out", [second])
    hf.train(resume_from_checkpoint=True)  # the Trainer picks checkpoint-4
    resumed = next(run for run in tracker.runs() if run.id != failed.id)
    saved = check_folders(tracker, failed.id)
    assert (resumed.resumed_from, resumed.resumed_checkpoint) == (failed.id, saved[4].id)
    assert (resumed.status, resumed.start_step, resumed.tags["resume_verified"]) == (
        "completed", 4, "ok")
    assert [s.step for s in tracker.steps(resumed.id)] == [5, 6]
    assert tracker.artifacts(type="checkpoint", run=resumed.id)[-1].parents == [saved[4].id]


def test_job_spec_names_the_peft_adapter(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_model(), peft.LoraConfig(r=4, lora_alpha=8,
                                                              lora_dropout=0.1,
                                                              target_modules=["c_attn"]))
    spec = job_spec(arguments(tmp_path, save_steps=0.25, warmup_steps=0.5,
                              save_strategy="steps"), model, 40)
    assert spec["adapter"] == {"type": "lora", "rank": 4, "alpha": 8, "dropout": 0.1,
                               "target_modules": ["c_attn"]}
    assert spec["checkpoint_policy"]["save_every"] == 10  # a quarter of 40 steps
    assert spec["learning"]["warmup_steps"] == 20 and spec["learning"]["max_steps"] == 40
    assert spec["validation"] == {"strategy": "steps", "every": 2, "metric": "eval_loss"}


def test_the_trainer_alone_deletes_its_folders(tmp_path: Path, make_tracker: Any) -> None:
    """save_total_limit=1 with the best kept: an evaluation between saves (step 9) makes the
    Trainer keep checkpoint-6 as its best while lineage's own rule would pick checkpoint-8;
    lineage must not delete files of a folder the Trainer keeps (the Trainer rotates them)."""
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    scores = iter([1.0, 2.0, 3.0, 0.0])  # evaluations at steps 3, 6, 9 (new bests) and 10
    hf = transformers.Trainer(
        model=tiny_model(), train_dataset=Tokens(40, 1), eval_dataset=Tokens(8, 2),
        args=arguments(tmp_path / "out", max_steps=10, save_steps=2, eval_steps=3,
                       save_total_limit=1, metric_for_best_model="score",
                       greater_is_better=True),
        compute_metrics=lambda prediction: {"score": next(scores)},
        callbacks=[LineageCallback(tracker, strict=True)])
    hf.train()
    assert hf.state.best_model_checkpoint == str(tmp_path / "out" / "checkpoint-6")
    kept = [p.name for p in (tmp_path / "out").glob("checkpoint-*")]
    assert kept == ["checkpoint-6"]  # with a limit of 1 the Trainer ends with its best alone
    assert (tmp_path / "out" / "checkpoint-6" / MANIFEST_NAME).is_file()
    saved = check_folders(tracker, tracker.runs()[0].id)
    assert [step for step, view in saved.items() if view.status == "live"] == [6]
    assert all(view.deletion == "already_gone" for step, view in saved.items() if step != 6)


class HeldSaves(transformers.TrainerCallback):  # type: ignore[misc]
    """Holds the saves thread until the first ``on_save`` that follows LineageCallback's has
    seen the folder still without its manifest: hashing is not done on the training thread."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.unhashed_at_save: list[bool] = []
        SAVES.submit(lambda: self.release.wait(60))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.unhashed_at_save.append(not (folder / MANIFEST_NAME).exists())
        self.release.set()


def test_checkpoint_folders_are_hashed_off_the_training_thread(tmp_path: Path,
                                                               make_tracker: Any) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    held = HeldSaves()
    trainer(tmp_path / "out", [LineageCallback(tracker, strict=True), held]).train()
    assert held.unhashed_at_save[0]  # on_save returned before the folder was hashed
    run = tracker.runs()[0]
    saved = check_folders(tracker, run.id)  # yet each is registered with its manifest's digest
    assert sorted(saved) == [2, 4, 6] and run.status == "completed"
    assert tracker.run(run.id).best_checkpoint in {view.id for view in saved.values()}


CHILD = """
import sys, time
sys.path.insert(0, {root!r})
import lineage, transformers
from lineage.integrations.background_saves import SAVES
from lineage.integrations.hf import LineageCallback
from tests.integration.test_hf_integration import trainer

tracker = lineage.Tracker({db!r})

class Pause(transformers.TrainerCallback):  # after LineageCallback has logged step 7
    def on_log(self, args, state, control, **kwargs):
        if state.global_step == 7:
            SAVES.wait()  # checkpoint-6 is hashed and registered on the saves thread
            tracker.flush()
            print("run", callback.run.id, flush=True)
            time.sleep(600)

callback = LineageCallback(tracker, strict=True)
trainer({out!r}, [callback, Pause()], max_steps=10).train()
"""


def test_killed_trainer_keeps_its_records_and_resumes(tmp_path: Path, make_tracker: Any) -> None:
    """A Trainer killed (SIGKILL) at step 7: its steps and checkpoints up to the kill stay as
    recorded, the monitor's rules see a lost process; resuming from the older checkpoint-4
    records the resume and retires the killed run's checkpoint-6, whose folder is written
    again."""
    out, db = tmp_path / "out", tmp_path / "lineage.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), db=str(db), out=str(out)))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:  # the Trainer prints its logs too: read up to our line
        lines = iter(child.stdout.readline, "")  # type: ignore[union-attr]
        run_id = next((line.split()[1] for line in lines if line.startswith("run ")), None)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert run_id, "the child died before step 7"

    tracker = make_tracker(str(db))
    killed = tracker.run(run_id)
    assert [s.step for s in tracker.steps(killed.id)] == list(range(1, 8))
    saved = check_folders(tracker, killed.id)  # live folders equal their manifests
    assert {step: view.status for step, view in saved.items()} == {
        2: "retired", 4: "live", 6: "live"}  # save_total_limit=2 removed checkpoint-2
    source = LocalRunStatusSource(tracker, stale_after_s=30)
    later = source.last_activity(killed.id) + timedelta(seconds=31)
    lost = source.signal_for(tracker.run(killed.id), later)
    assert lost is not None and lost.signal == "heartbeat.lost"  # a crash, by the rules

    callback = LineageCallback(tracker, strict=True)
    trainer(out, [callback], max_steps=8).train(resume_from_checkpoint=str(out / "checkpoint-4"))
    resumed = tracker.run(callback_run_id(tracker, killed.id))
    assert (resumed.resumed_from, resumed.resumed_checkpoint, resumed.status) == (
        killed.id, saved[4].id, "completed")
    assert tracker.run(killed.id).status == "superseded"
    again = tracker.artifact(saved[6].id)  # checkpoint-6 was written again: other bytes
    assert (again.status, again.deletion) == ("retired", "already_gone")
    assert sorted(check_folders(tracker, resumed.id)) == [6, 8]


def callback_run_id(tracker: Any, other: Any) -> Any:
    return next(run.id for run in tracker.runs() if run.id != other)


def test_an_evaluation_is_recorded_when_its_checkpoint_cannot_be(tmp_path: Path,
                                                                  make_tracker: Any) -> None:
    """The saves thread registers a folder, then the evaluation of its step: a folder that
    cannot be read (gone before it was hashed) fails the registration, not the evaluation."""
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    callback = LineageCallback(tracker, strict=True)
    run = tracker.start_run("hf")
    run.log_step(3, {"loss": 1.0})
    with pytest.raises(OSError):
        callback._register(run, tmp_path / "checkpoint-3", 3, None, (3, {"eval_loss": 0.5}))
    run.finish()
    tracker.flush()
    recorded = tracker.run(run.id)
    assert (recorded.evaluations, recorded.checkpoints) == (1, [])
