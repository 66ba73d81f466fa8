"""Lightning with ``LineageLogger``: a tiny module trained for real on the CPU with a
``ModelCheckpoint`` keeping the best two; the records are compared with the files on disk and
with the callback's own ranking; an exception in training is recorded as the run's failure."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from lineage.integrations.lightning import LineageLogger  # noqa: E402


class Tiny(pl.LightningModule):  # type: ignore[misc]
    def __init__(self, learning_rate: float = 0.05, fail_at: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, index: int) -> Any:
        if self.hparams.fail_at == self.global_step:
            raise RuntimeError(f"diverged at step {self.global_step}")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


def loader(seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=generator)
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=8)


def fit(tmp_path: Path, logger: LineageLogger, module: Any, *, max_steps: int = 6,
        ckpt_path: Any = None) -> Any:
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss",
                                              mode="min", save_top_k=2)
    trainer = pl.Trainer(max_steps=max_steps, val_check_interval=2, limit_val_batches=2,
                         log_every_n_steps=1, callbacks=[checkpoint], logger=logger,
                         accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, loader(1), loader(2), ckpt_path=ckpt_path)
    return checkpoint


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_fit_is_recorded_with_best_k_aliases(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"))
    torch.manual_seed(0)
    checkpoint = fit(tmp_path, LineageLogger(tracker, strict=True, sample_every_s=0), Tiny())
    run = tracker.runs()[0]
    assert (run.status, run.evaluations) == ("completed", 3)
    assert run.job["learning"] == {"learning_rate": 0.05}
    steps = tracker.steps(run.id)
    assert [s.step for s in steps if "train_loss" in s.metrics] == [0, 1, 2, 3, 4, 5]
    saved = tracker.artifacts(type="checkpoint", run=run.id)
    assert [v.step for v in saved] == [2, 4, 6]
    by_path = {}
    for view in saved:
        path = Path(unquote(urlparse(view.uri).path))
        by_path[str(path)] = view
        if path.exists():
            assert (view.status, view.checksum) == ("live", sha256(path))
        else:  # save_top_k=2 removed it
            assert (view.status, view.deletion) == ("retired", "already_gone")
    assert sum(v.status == "retired" for v in saved) == 1
    ranked = sorted(checkpoint.best_k_models.items(), key=lambda item: float(item[1]))
    scope = str(run.id)[:8]
    best = by_path[str(Path(checkpoint.best_model_path).resolve())]
    assert f"best@{scope}" in best.aliases and f"top-1@{scope}" in best.aliases
    second = by_path[str(Path(ranked[1][0]).resolve())]
    assert f"top-2@{scope}" in second.aliases


def test_an_exception_in_training_is_the_runs_failure(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    with pytest.raises(RuntimeError, match="diverged"):
        fit(tmp_path, LineageLogger(tracker, strict=True), Tiny(fail_at=3))
    run = tracker.runs()[0]
    assert (run.status, run.failures) == ("failed", 1)
    assert "RuntimeError: diverged at step 3" in tracker.run(run.id).status_reason


def test_fit_resumed_from_a_checkpoint_is_a_resume(tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    first = fit(tmp_path, LineageLogger(tracker, strict=True), Tiny(), max_steps=4)
    old = tracker.runs()[0]
    path = first.last_model_path or first.best_model_path
    fit(tmp_path, LineageLogger(tracker, strict=True), Tiny(), ckpt_path=path)  # found itself
    new = next(run for run in tracker.runs() if run.id != old.id)
    ckpt = next(v for v in tracker.artifacts(type="checkpoint", run=old.id)
                if Path(unquote(urlparse(v.uri).path)) == Path(path).resolve())
    assert (new.resumed_from, new.resumed_checkpoint, new.status) == (old.id, ckpt.id,
                                                                      "completed")
    assert tracker.artifacts(type="checkpoint", run=new.id)[0].parents == [ckpt.id]


def test_fit_resumed_from_last_names_the_file_lightning_restored(tmp_path: Path,
                                                                 make_tracker: Any) -> None:
    tracker = make_tracker("memory://")

    def trainer(max_steps: int) -> Any:
        return pl.Trainer(max_steps=max_steps, val_check_interval=2, limit_val_batches=1,
                          callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt",
                                                                  save_last=True)],
                          logger=LineageLogger(tracker, strict=True), accelerator="cpu",
                          enable_progress_bar=False, enable_model_summary=False,
                          num_sanity_val_steps=0, log_every_n_steps=1)

    trainer(2).fit(Tiny(), loader(1), loader(2))
    old = tracker.runs()[0]
    last = tracker.artifacts(type="checkpoint", run=old.id)[-1]
    assert Path(unquote(urlparse(last.uri).path)).name == "last.ckpt"
    trainer(4).fit(Tiny(), loader(1), loader(2), ckpt_path="last")  # Lightning finds the file
    new = next(run for run in tracker.runs() if run.id != old.id)
    assert (new.resumed_from, new.resumed_checkpoint, new.status) == (old.id, last.id,
                                                                      "completed")
