"""``lineage demo``: a small real training run, a backend failure, and a recorded recovery.

The model is a 4-class softmax classifier on 16 features whose frozen base weights get a LoRA
update (rank 4), trained with SGD + momentum on generated data (NumPy, a fixed seed: every run
of the demo computes the same numbers). Batches are a pure function of the step, so resuming
from a checkpoint with its optimizer state replays exactly the trajectory that was lost.

Everything is recorded through the public API, as training code would: datasets and the base
model registered, a run started with its job spec and a ``CheckpointPolicy`` (a safetensors
checkpoint every 25 steps when ``should_checkpoint`` says so, ``keep_last=2``: older checkpoints
are retired and their files deleted, except the best by ``val_loss`` and the one resumed from),
every step logged, evaluations every 100 moving the ``best`` alias, the backend flagging the
session corrupted, and ``tracker.recover`` (the executor: verify the latest checkpoint, resume a
new run with the optimizer state, record the lost steps) into a new run that finishes the job.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from uuid import UUID

import numpy as np
import safetensors.numpy

import lineage
from lineage.application.handles import ArtifactRef
from lineage.application.views import ArtifactView, RunView

SEED = 1234
FEATURES, CLASSES, RANK, ALPHA = 16, 4, 4, 8.0
TRAIN_ROWS, VAL_ROWS, BATCH = 4800, 960, 32
LEARNING_RATE, MOMENTUM, WARMUP = 0.05, 0.9, 20
SAVE_EVERY, EVAL_EVERY, KEEP_LAST = 25, 100, 2
MIN_STEPS = 100
PARAMS = ("lora_A", "lora_B", "bias")

POLICY = lineage.CheckpointPolicy(strategy="steps", save_every=SAVE_EVERY, keep_last=KEEP_LAST,
                                  save_best=True, best_metric="val_loss", best_mode="min",
                                  format="safetensors")
RETRY = lineage.RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_s=1.0,
                            max_delay_s=10.0)


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    base: np.ndarray  # the frozen base model's weight (FEATURES x CLASSES)


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` recorded: the ids and files to look at afterwards."""

    database: str
    directory: Path
    dataset: ArtifactRef
    val_dataset: ArtifactRef
    base_model: ArtifactRef
    failed_run: RunView
    resumed_run: RunView
    failure_step: int
    recovery_checkpoint: ArtifactView
    checkpoints: list[ArtifactRef] = field(default_factory=list)  # both runs, in save order
    checkpoint_states: list[ArtifactView] = field(default_factory=list)  # same order, at the end
    lost_steps: list[int] = field(default_factory=list)  # logged by the failed run, then lost
    final_eval: dict[str, float] = field(default_factory=dict)


# -- the model -----------------------------------------------------------------------------------


def make_data(seed: int = SEED) -> Data:
    """Features rounded to 4 decimals (exactly what the jsonl files hold) and labels from a
    teacher that is the base model plus a low-rank shift: what a LoRA update can learn."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (FEATURES, CLASSES))
    teacher = base + rng.normal(0, 1, (FEATURES, 2)) @ rng.normal(0, 1, (2, CLASSES))
    x = np.round(rng.normal(0, 1, (TRAIN_ROWS + VAL_ROWS, FEATURES)), 4)
    y = np.argmax(x @ teacher + rng.gumbel(0, 0.5, (len(x), CLASSES)), axis=1)
    return Data(x[:TRAIN_ROWS], y[:TRAIN_ROWS], x[TRAIN_ROWS:], y[TRAIN_ROWS:], base)


class Trainer:
    """LoRA on a linear classifier: logits = x @ (base + (alpha/rank) A @ B) + bias."""

    def __init__(self, data: Data, seed: int = SEED) -> None:
        self.data = data
        self.seed = seed
        rng = np.random.default_rng(seed + 1)
        self.params = {"lora_A": rng.normal(0, 0.1, (FEATURES, RANK)),
                       "lora_B": np.zeros((RANK, CLASSES)), "bias": np.zeros(CLASSES)}
        self.momentum = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.steps_per_epoch = TRAIN_ROWS // BATCH

    def epoch(self, step: int) -> int:
        return (step - 1) // self.steps_per_epoch

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``step`` (1-based): a per-epoch shuffle, so a resume sees the same data."""
        order = np.random.default_rng([self.seed, self.epoch(step)]).permutation(TRAIN_ROWS)
        start = (step - 1) % self.steps_per_epoch * BATCH
        rows = order[start:start + BATCH]
        return self.data.x_train[rows], self.data.y_train[rows]

    def weight(self) -> np.ndarray:
        return self.data.base + ALPHA / RANK * self.params["lora_A"] @ self.params["lora_B"]

    def loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(cross-entropy, accuracy, d loss / d logits)."""
        logits = x @ self.weight() + self.params["bias"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        picked = probs[np.arange(len(y)), y]
        grad = probs.copy()
        grad[np.arange(len(y)), y] -= 1
        accuracy = float(np.mean(np.argmax(logits, axis=1) == y))
        return float(-np.mean(np.log(picked + 1e-12))), accuracy, grad / len(y)

    def learning_rate(self, step: int, total: int) -> float:
        if step <= WARMUP:
            return LEARNING_RATE * step / WARMUP
        progress = (step - WARMUP) / max(1, total - WARMUP)
        return LEARNING_RATE * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def step(self, step: int, total: int) -> dict[str, float]:
        """One SGD-with-momentum update; returns the step's metrics."""
        x, y = self.batch(step)
        loss, _, dlogits = self.loss(x, y)
        scale = ALPHA / RANK
        dweight = x.T @ dlogits
        grads = {"lora_A": scale * dweight @ self.params["lora_B"].T,
                 "lora_B": scale * self.params["lora_A"].T @ dweight, "bias": dlogits.sum(axis=0)}
        lr = self.learning_rate(step, total)
        for name, grad in grads.items():
            self.momentum[name] = MOMENTUM * self.momentum[name] + grad
            self.params[name] -= lr * self.momentum[name]
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        return {"loss": loss, "lr": lr, "grad_norm": norm}

    def evaluate(self) -> dict[str, float]:
        loss, accuracy, _ = self.loss(self.data.x_val, self.data.y_val)
        return {"val_loss": loss, "val_accuracy": accuracy}

    def state(self, step: int) -> dict[str, np.ndarray]:
        tensors = {name: value.astype(np.float32) for name, value in self.params.items()}
        tensors.update({f"optimizer.momentum.{n}": v.astype(np.float32)
                        for n, v in self.momentum.items()})
        tensors["optimizer.step"] = np.array(step, dtype=np.int64)
        return tensors

    def restore(self, tensors: dict[str, np.ndarray]) -> int:
        """Load weights and momentum saved by ``state``; returns the step they were saved at."""
        self.params = {n: tensors[n].astype(np.float64) for n in PARAMS}
        self.momentum = {n: tensors[f"optimizer.momentum.{n}"].astype(np.float64) for n in PARAMS}
        return int(tensors["optimizer.step"])


# -- recording -----------------------------------------------------------------------------------


def failure_step(steps: int) -> int:
    """Where the backend flags the session corrupted: step 170 of 300, proportionally."""
    return steps * 17 // 30


def write_inputs(directory: Path, data: Data) -> tuple[Path, Path, Path]:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "models").mkdir(parents=True, exist_ok=True)
    train_file, val_file = directory / "data" / "train.jsonl", directory / "data" / "val.jsonl"
    for path, x, y in ((train_file, data.x_train, data.y_train),
                       (val_file, data.x_val, data.y_val)):
        rows = zip(x.tolist(), y.tolist(), strict=True)
        path.write_text("".join(json.dumps({"x": row, "label": label}) + "\n"
                                for row, label in rows), encoding="utf-8")
    base = save_tensors(directory / "models" / "base.safetensors",
                        {"weight": data.base.astype(np.float32)}, {"model": "demo-linear-16x4"})
    return train_file, val_file, base


def job_spec(steps: int, datasets: list[ArtifactRef]) -> dict[str, Any]:
    return {
        "model": "demo-linear-16x4-lora",
        "base_model": "demo-linear-16x4",
        "adapter": {"type": "lora", "rank": RANK, "alpha": ALPHA, "target_modules": ["linear"]},
        "learning": {"learning_rate": LEARNING_RATE, "batch_size": BATCH,
                     "epochs": math.ceil(steps / (TRAIN_ROWS // BATCH)), "momentum": MOMENTUM,
                     "optimizer": "sgd_momentum", "schedule": "warmup_cosine",
                     "warmup_steps": WARMUP, "max_steps": steps},
        "datasets": [{"uri": ref.uri, "digest": ref.digest} for ref in datasets],
        "checkpoint_policy": POLICY,
        "retry_policy": RETRY,
        "validation": {"every": EVAL_EVERY, "metric": "val_loss", "dataset": "val"},
        "resources": {"device": "cpu", "workers": 1},
        "tags": {"demo": "true", "scenario": "corruption-recovery"},
    }


def train(run: lineage.RunHandle, trainer: Trainer, first: int, last: int, total: int,
          directory: Path, parent: ArtifactRef | None = None) -> list[ArtifactRef]:
    """Train steps ``first..last`` (inclusive) on ``run``; returns the checkpoints saved.

    The run's checkpoint policy decides when to save (every SAVE_EVERY steps, the final step,
    and an evaluation that improves val_loss); a save comes before the evaluation of the same
    step, so the ``best`` alias can point at it.
    """
    saved: list[ArtifactRef] = []
    folder = directory / "checkpoints" / f"run-{run.id.hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    for step in range(first, last + 1):
        began = time.perf_counter()
        metrics = trainer.step(step, total)
        run.log_step(step, metrics, epoch=trainer.epoch(step), tokens=BATCH,
                     durations={"step_s": time.perf_counter() - began})
        evaluation = trainer.evaluate() if step % EVAL_EVERY == 0 or step == total else None
        if run.should_checkpoint(step, epoch=trainer.epoch(step), metrics=evaluation,
                                 final=step == total):
            path = save_tensors(folder / f"step-{step:06d}.safetensors", trainer.state(step),
                                {"run_id": str(run.id), "step": str(step)})
            parents = [parent] if parent is not None and not saved else None
            saved.append(run.save_checkpoint(path, step=step, includes_optimizer=True,
                                             parents=parents))
        if evaluation is not None:
            run.log_eval(step, evaluation, dataset="val")
    return saved


def save_tensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (a temporary file renamed into place), so a reader
    never sees a half-written checkpoint; returns ``path``."""
    partial = path.with_name(f".{path.name}.partial")
    safetensors.numpy.save_file(tensors, partial, metadata=metadata)
    os.replace(partial, path)
    return path


def load_verified(ref: ArtifactRef | ArtifactView) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint file. Its bytes are read once, their sha256 checked against
    the registered one (ChecksumMismatchError when it differs), and those same bytes parsed, so
    what is loaded is what was verified (``safetensors.SafetensorError`` if they are malformed)."""
    return safetensors.numpy.load(verified_bytes(ref))


def verified_bytes(ref: ArtifactRef | ArtifactView) -> bytes:
    """The checkpoint file's bytes, after checking they still hash to what was registered."""
    data = local_path(ref.uri).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != ref.checksum:
        raise lineage.ChecksumMismatchError("checkpoint", f"sha256:{ref.checksum}",
                                            f"sha256:{actual}", ref.uri)
    return data


def recover(tracker: lineage.Tracker, failed: lineage.RunHandle,
            trainer: Trainer) -> tuple[ArtifactView, lineage.RunHandle]:
    """``tracker.recover``: the executor picks the latest checkpoint, verifies its sha256 and
    optimizer state, starts the resumed run and calls ``resume`` to load it into the trainer;
    the steps after the checkpoint are recorded as lost and the failed run superseded.
    Returns the checkpoint resumed from and the new run; RuntimeError if recovery failed."""

    def resume(checkpoint: ArtifactView, new_run: lineage.RunHandle) -> None:
        if trainer.restore(load_verified(checkpoint)) != checkpoint.step:
            raise RuntimeError(f"{checkpoint.uri} does not hold step {checkpoint.step}")

    result = tracker.recover(failed, strategy="latest", restore_optimizer=True, retry=RETRY,
                             resume=resume, tags={"demo": "true", "resumed": "true"})
    if not result.recovered or result.new_run is None or result.checkpoint is None:
        raise RuntimeError(f"the demo's recovery did not succeed: {result.message}")
    return result.checkpoint, result.new_run


def run_demo(database_url: str | None, directory: Path, steps: int = 300,
             console: Any = None) -> DemoResult:
    """Run the scenario; record into ``database_url`` (None: LINEAGE_DATABASE_URL, else
    ./lineage.db) and write files under ``directory``. Prints progress to ``console`` (a
    rich Console) when given; silent otherwise (``lineage.demo.run_and_report`` adds the
    summary). Blocks until everything is committed. A database that cannot be opened raises
    StoreError (or ConfigurationError) before any file is written."""
    if steps < MIN_STEPS:
        raise ValueError(f"the demo needs at least {MIN_STEPS} steps, got {steps}")
    directory = Path(directory).expanduser().resolve()
    data = make_data()
    with lineage.Tracker(database_url) as tracker:  # a bad database fails before any file
        train_file, val_file, base_file = write_inputs(directory, data)
        train_ref, val_ref, base_ref = register_inputs(tracker, train_file, val_file, base_file)
        trainer, fail_at = Trainer(data), failure_step(steps)
        job = job_spec(steps, [train_ref, val_ref])
        with tracker.start_run("demo-sft", job=job, inputs=[train_ref, val_ref, base_ref],
                               tags=job["tags"]) as first:
            _say(console, f"run {first.id}: training steps 1-{fail_at}")
            saved = train(first, trainer, 1, fail_at, steps, directory)
            first.record_failure("backend_corrupted", "training service flagged the session "
                                 "corrupted", signal="tinker.corrupted", corrupted=True,
                                 retryable=True, step=fail_at)
            _say(console, f"[red]step {fail_at}: backend flagged the session corrupted[/red]")
            checkpoint, resumed = recover(tracker, first, trainer)
        start = (checkpoint.step or 0) + 1
        _say(console, f"run {resumed.id}: resumed at step {start}, training steps {start}-{steps}")
        with resumed:
            saved += train(resumed, trainer, start, steps, steps, directory,
                           parent=tracker_ref(checkpoint))
        result = DemoResult(
            tracker.location, directory, train_ref, val_ref, base_ref, tracker.run(first.id),
            tracker.run(resumed.id), fail_at, checkpoint, saved, final_states(tracker, saved),
            lost_steps(tracker, first.id, checkpoint.step or 0), trainer.evaluate())
    return result


def register_inputs(tracker: lineage.Tracker, train_file: Path, val_file: Path,
                    base_file: Path) -> tuple[ArtifactRef, ArtifactRef, ArtifactRef]:
    return (tracker.register_artifact(train_file, type="dataset", name="demo-train"),
            tracker.register_artifact(val_file, type="dataset", name="demo-val"),
            tracker.register_artifact(base_file, type="model", name="demo-linear-16x4",
                                      format="safetensors"))


def final_states(tracker: lineage.Tracker, saved: list[ArtifactRef]) -> list[ArtifactView]:
    """Each saved checkpoint as it ended up (live, or retired and deleted by retention)."""
    return [tracker.artifact(ref.id) for ref in saved]


def lost_steps(tracker: lineage.Tracker, run_id: UUID, after: int) -> list[int]:
    return [s.step for s in tracker.steps(run_id) if s.step > after]


def tracker_ref(view: ArtifactView) -> ArtifactRef:
    """An ArtifactRef for a registered artifact (to name it as a parent)."""
    return ArtifactRef(view.id, view.uri, view.type, view.size, view.checksum_algorithm,
                       view.checksum, view.step)


def _say(console: Any, message: str) -> None:
    if console is not None:
        console.print(message, highlight=False, soft_wrap=True)


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))
