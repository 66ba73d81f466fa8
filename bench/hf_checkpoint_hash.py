"""What describing a Hugging Face checkpoint folder costs beside the Trainer's own save.

The Trainer writes a checkpoint folder through writers lineage cannot hash as they write
(``safetensors``' ``save_file``, ``torch.save`` for optimizer, scheduler and RNG state, JSON
for the trainer state), so ``LineageCallback.on_save`` reads the files it just wrote (from the
page cache, straight after the write) to put each one's SHA-256 in the manifest, on the
background saves thread. This runs a real ``Trainer`` (a GPT-2 built from a config, nothing
downloaded, on the CPU) with the callback, and times, per checkpoint, the Trainer's
``_save_checkpoint``, what the callback costs the training thread (``on_save``, which hands the
folder over, and any wait for a folder still in flight before the Trainer saves again), and the
background work (manifest: read + hash every file, write it; register, committed).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from common import Report, bench_parser, open_tracker, single_store, temp_store

from lineage.integrations.hf import LineageCallback


class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, count: int, length: int, vocab: int) -> None:
        self.ids = torch.randint(0, vocab, (count, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class TimedCallback(LineageCallback):
    """LineageCallback with its ``on_save``, its waits for a save in flight (training thread)
    and its background registration timed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_save_s: list[float] = []
        self.waits_s: list[float] = []
        self.background_s: list[float] = []

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().on_save(args, state, control, **kwargs)
        self.on_save_s.append(time.perf_counter() - start)

    def _settle(self) -> None:
        start = time.perf_counter()
        super()._settle()
        self.waits_s.append(time.perf_counter() - start)

    def _register(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return super()._register(*args)
        finally:
            self.background_s.append(time.perf_counter() - start)


def bench(report: Report, args: Any, url: str) -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=args.vocab, n_positions=64, n_embd=args.width,
                                     n_layer=args.layers, n_head=4)
    model = transformers.GPT2LMHeadModel(config)
    params = sum(p.numel() for p in model.parameters())
    tracker = open_tracker(url, args)
    saves: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lineage_bench_hf_") as out:
        callback = TimedCallback(tracker, strict=True, sample_every_s=30)
        trainer = transformers.Trainer(
            model=model, train_dataset=Tokens(64, 64, args.vocab), callbacks=[callback],
            args=transformers.TrainingArguments(
                output_dir=out, max_steps=args.saves * args.every, save_steps=args.every,
                per_device_train_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True,
                logging_steps=args.every, save_total_limit=2))
        save = trainer._save_checkpoint

        def timed_save(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return save(*a, **k)
            finally:
                saves.append(time.perf_counter() - start)

        trainer._save_checkpoint = timed_save
        trainer.train()
        callback._settle()
        folder = max(Path(out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    tracker.close()
    report.section(f"GPT-2 {params:,} parameters, {args.saves} checkpoints of "
                   f"{size / 1e6:,.1f} MB (model, optimizer, scheduler, RNG, state)")
    trainer_s, ours_s = statistics.median(saves), statistics.median(callback.on_save_s)
    background_s = statistics.median(callback.background_s)
    waited_s = sum(callback.waits_s) / len(saves)
    report.figure("Trainer._save_checkpoint", trainer_s * 1e3, "ms (median)", fmt="{:,.1f}")
    report.figure("LineageCallback.on_save", ours_s * 1e3, "ms (median)", fmt="{:,.2f}",
                  note="on the training thread: the folder handed to the saves thread")
    report.figure("waits for a save in flight", waited_s * 1e3, "ms a checkpoint",
                  fmt="{:,.2f}", note="on the training thread, before the Trainer's next save "
                                      "or evaluation, and at the end")
    report.figure("hash + manifest + register", background_s * 1e3, "ms (median)",
                  fmt="{:,.1f}", note=f"on the saves thread; {size / 1e6 / background_s:,.0f} "
                                      "MB/s read and hashed")
    report.figure("training thread / Trainer save", 100 * (ours_s + waited_s) / trainer_s, "%",
                  fmt="{:,.1f}", note="per checkpoint: on_save + waits; on_save alone, rounds "
                       + " ".join(f"{100 * o / t:.0f}" for o, t in
                                  zip(callback.on_save_s, saves, strict=True)))


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False)
    parser.add_argument("--width", type=int, default=256, help="n_embd (256)")
    parser.add_argument("--layers", type=int, default=4, help="n_layer (4)")
    parser.add_argument("--vocab", type=int, default=8192, help="vocab_size (8192)")
    parser.add_argument("--saves", type=int, default=5, help="checkpoints (5)")
    parser.add_argument("--every", type=int, default=2, help="steps between checkpoints (2)")
    args = parser.parse_args()
    report = Report.start("bench/hf_checkpoint_hash.py: hashing a Trainer's checkpoint folder")
    with temp_store(single_store(args), args, report) as store:
        bench(report, args, store.url)
    report.finish(args.json)


if __name__ == "__main__":
    main()
