"""Metric history of a ten-million-step run: every point, downsampled for plots, and the audit.

Builds the step metrics read model of one run directly (no ingest: encoding the blocks as the
writer does and making each row as the projection does, ``projections.metrics.row``) in a temp
SQLite file: ``--blocks`` blocks (10,000) of 900 to 1,100 steps (random: bucket edges fall
inside blocks) (about ``--blocks`` x 1,000
steps), metrics ``loss``, ``lr``, ``grad_norm`` at every step and ``val`` at every tenth (a
metric missing from most steps: the slow case, where every block at a bucket edge is decoded).
Then times, each in a fresh child process that also reports its peak RSS:

    metric_history(run, "loss")                  every point (MetricHistory)
    metric_history(run, NAME, buckets=N)         for N in --buckets, NAME in loss, val
    audit(include_steps=True, limit=100)         the first page, a page from the middle, and a
                                                 page filtered by actor (every block's header read)

Targets: the full history <= 10 s and peak RSS <= 300 MB; a downsampled history <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, metric_series

from lineage.codec.step_block import Origin, StepColumns, encode_block
from lineage.codec.step_decode import decode_block
from lineage.projections.metrics import row
from lineage.projections.tables import metadata, step_metrics

FULL_TARGET_S, BUCKETS_TARGET_S, RSS_TARGET_MB = 10.0, 1.0, 300.0

CHILD = """
import json, resource, sys, time
from sqlalchemy import create_engine
from lineage.projections.queries import ReadModels
db, run_id, what, arg = sys.argv[1:5]
views = ReadModels(lambda: None, create_engine(f"sqlite:///{db}"), catch_up=False)
start, cpu = time.perf_counter(), time.process_time()
if what == "full":
    found = len(views.metric_history(run_id, arg))
elif what == "buckets":
    name, count = arg.split(":")
    found = len(views.metric_buckets(run_id, name, int(count)))
else:
    after, actor = arg.split(":")
    found = len(views.audit(include_steps=True, after=int(after), actor=actor or None, limit=100))
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "found": found,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(db: Path, blocks: int, run_id: uuid.UUID) -> tuple[int, int]:
    """The read model rows of one run of about ``blocks`` x 1,000 steps; (steps, last position)."""
    engine = create_engine(f"sqlite:///{db}")
    metadata.create_all(engine)
    series = metric_series(4096)
    origin = Origin(1_800_000_000_000_000, "bench", "default", "trainer")
    seq, rows, sizes = 1, [], random.Random(7)
    with engine.begin() as conn:
        for index in range(blocks):
            size = sizes.randint(900, 1100)
            steps = list(range(seq - 1, seq - 1 + size))
            metrics = [dict(series[s % 4096], **({"val": s / 1e6} if s % 10 == 0 else {}))
                       for s in steps]
            columns = StepColumns(steps, [origin.recorded_us + s for s in steps], [None] * size,
                                  [None] * size, [None] * size, metrics, [None] * size,
                                  [None] * size, {})
            state = encode_block(run_id, seq, uuid.uuid4().bytes, origin, columns)
            rows.append(dict(zip([c.name for c in step_metrics.columns],
                                 row(decode_block(state, index + 1)), strict=True)))
            seq += size
            if len(rows) == 500:
                conn.execute(insert(step_metrics), rows)
                rows = []
        if rows:
            conn.execute(insert(step_metrics), rows)
    engine.dispose()
    return seq - 1, blocks


def built(db: Path, blocks: int) -> tuple[uuid.UUID, int, int]:
    """(run id, steps, last position) of the read model in ``db``, built when missing."""
    if db.exists():
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            run_id, steps, last = conn.execute(select(
                step_metrics.c.run_id, func.max(step_metrics.c.seq_to),
                func.max(step_metrics.c.position))).one()
        engine.dispose()
        return uuid.UUID(run_id), steps, last
    run_id = uuid.uuid4()
    return (run_id, *build(db, blocks, run_id))


def child(db: Path, run_id: uuid.UUID, what: str, arg: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(db), str(run_id), what, arg],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--buckets", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--db", type=Path, default=None,
                        help="keep the read model in this SQLite file, and reuse it when it "
                             "exists (the build takes minutes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = Report.start("metric history of a long run")
    with tempfile.TemporaryDirectory() as folder:
        db = args.db or Path(folder) / "steps.db"
        started = time.perf_counter()
        run_id, steps, last = built(db, args.blocks)
        report.figure("steps", steps, "", fmt="{:,}")
        report.figure("read model ready in", time.perf_counter() - started, "s")
        report.figure("database size", db.stat().st_size / 1e6, "MB")
        report.section("every point")
        found = child(db, run_id, "full", "loss")
        report.figure("metric_history loss", found["wall"], "s", fmt="{:.2f}",
                      target=("<=", FULL_TARGET_S),
                      note=f"{found['found']:,} points, CPU {found['cpu']:.2f} s")
        report.figure("peak RSS", found["rss_mb"], "MB", target=("<=", RSS_TARGET_MB))
        for name in ("loss", "val"):
            report.section(f"downsampled {name}")
            for count in args.buckets:
                found = child(db, run_id, "buckets", f"{name}:{count}")
                report.figure(f"buckets={count}", found["wall"], "s", fmt="{:.3f}",
                              target=("<=", BUCKETS_TARGET_S),
                              note=f"{found['found']} buckets, CPU {found['cpu']:.3f} s, "
                                   f"peak RSS {found['rss_mb']:.0f} MB")
        report.section("audit with steps (limit 100)")
        for label, arg in (("first page", "0:"), ("middle page", f"{last // 2}:"),
                           ("actor filter, no match", "0:nobody")):
            found = child(db, run_id, "audit", arg)
            report.figure(label, found["wall"], "s", fmt="{:.3f}",
                          note=f"{found['found']} rows, CPU {found['cpu']:.3f} s")
    if args.json:
        print(json.dumps({"sections": report.sections, "targets": report.targets}, indent=2))


if __name__ == "__main__":
    main()
