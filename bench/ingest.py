"""Sustained durable ingest of steps, against a raw-driver baseline of the same bytes, same run.

Logs ``--steps`` steps to one run as fast as the training thread can, then ``flush()``;
steps/s = steps / (time from the first ``log_step`` to ``flush()`` returning), so every step
counted is committed (SQLite WAL + synchronous=FULL; PostgreSQL synchronous_commit=on). Steps
are stored in blocks (``lineage.codec.step_block``): one row per run per writer batch.

Then it measures what a step really costs on disk in the event store: the blocks' ``state``
bytes / steps, plus the per-row costs (topic, stream id, version, notification id, the block's
row in the event-id table) / steps.

Baseline (same run, right after ours, same machine moment): raw driver ``executemany`` of ONE
ROW PER STEP, each row that many bytes (slices of our real stored blocks: incompressible),
1,000 rows per transaction, into ``(seq integer primary key, data blob)``. SQLite: ``sqlite3``,
WAL + synchronous=FULL. PostgreSQL: psycopg (pipelined ``executemany``), synchronous_commit=on.
It prints ours / baseline. With ``--rounds N`` ours and the baseline alternate N times and the
median of the per-round ratios is reported too.

Targets: SQLite >= 100,000 steps/s and ours / baseline >= 0.8; PostgreSQL >= 60,000 steps/s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import time
import zlib
from array import array
from typing import Any

from common import (
    Report,
    Store,
    add_writer_profile_option,
    bench_parser,
    libpq_url,
    metric_series,
    open_tracker,
    print_writer_stats,
    stats_delta,
    stores_wanted,
    temp_store,
    writer_profile,
    writer_stats,
)

TARGETS = {"sqlite": 100_000, "postgresql": 60_000}  # steps/s
RATIO_TARGET = 0.8
BATCH = 1_000
SERIES = 10_000


# -- ours --------------------------------------------------------------------------------------


def ingest(url: str, args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Log ``args.steps`` steps to a new run, flush; the timings and writer stats."""
    series = metric_series(SERIES)
    tracker = open_tracker(url, args)
    try:
        run = tracker.start_run(name)
        tracker.flush()
        before = writer_stats(tracker)
        log_step = run.log_step
        steps = args.steps
        start = time.perf_counter()
        for i in range(steps):
            log_step(i, series[i % SERIES], epoch=i // 100_000)
        logged = time.perf_counter()
        tracker.flush()
        done = time.perf_counter()
        stats = stats_delta(writer_stats(tracker), before)
    finally:
        tracker.close()
    return {"rate": steps / (done - start), "total": done - start, "loop": logged - start,
            "flush": done - logged, "stats": stats, "steps": steps}


def print_ingest(report: Report, kind: str, timing: dict[str, Any]) -> None:
    report.figure("steps/s (durable)", timing["rate"], "steps/s", fmt="{:,.0f}",
                  target=(">=", TARGETS[kind]))
    report.figure("first log_step -> flush", timing["total"], "s", fmt="{:,.2f}")
    report.figure("caller loop (incl. blocking)", timing["loop"], "s", fmt="{:,.2f}",
                  note="log_step blocks while the queue is full")
    report.figure("final flush", timing["flush"], "s", fmt="{:,.2f}")
    print_writer_stats(report, timing["stats"], over="the measurement", steps=timing["steps"])


def metric_entropy(report: Report) -> None:
    """How much zlib could squeeze out of the bench's metric values (1.0 = nothing): realistic
    full-precision floats, not a constant that makes blocks look small."""
    series = metric_series(SERIES)
    raw = array("d", [m[name] for m in series[:BATCH] for name in ("loss", "lr", "grad_norm")])
    packed = raw.tobytes()
    report.figure("metric values zlib ratio", len(zlib.compress(packed)) / len(packed), "",
                  fmt="{:.2f}", note="compressed/raw float64 of 1,000 steps x 3 metrics; "
                                     "loss = exp decay + noise")


# -- what a step costs in the event store ------------------------------------------------------


def stored_shape(store: Store) -> dict[str, Any]:
    """The step blocks' stored sizes, and a sample of their states (real, incompressible)."""
    from lineage.codec.step_block import STEPS_TOPIC

    if store.kind == "sqlite":
        with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as conn:
            blocks, state, topic, stream = conn.execute(
                "SELECT count(*), sum(length(state)), avg(length(topic)), "
                "avg(length(originator_id)) FROM stored_events WHERE topic = ?",
                (STEPS_TOPIC,)).fetchone()
            sample = [row[0] for row in conn.execute(
                "SELECT state FROM stored_events WHERE topic = ? LIMIT 50", (STEPS_TOPIC,))]
        # version (8) + rowid (8) on the event row; a 32-hex id row per block
        per_row = topic + stream + 16 + 32
    else:
        import psycopg
        from psycopg import sql

        with psycopg.connect(libpq_url(store.url)) as conn:
            blocks, state, topic = conn.execute(
                sql.SQL("SELECT count(*), sum(octet_length(state)), avg(octet_length(topic)) "
                        "FROM {}.stored_events WHERE topic = %s").format(
                    sql.Identifier(store.schema)), (STEPS_TOPIC,)).fetchone()
            sample = [bytes(row[0]) for row in conn.execute(
                sql.SQL("SELECT state FROM {}.stored_events WHERE topic = %s LIMIT 50").format(
                    sql.Identifier(store.schema)), (STEPS_TOPIC,))]
        # stream uuid (16) + version (8) + notification id (8); a uuid row per block (16)
        per_row, topic = float(topic) + 48, float(topic)
    steps = sum(_count(s) for s in sample) if sample else 0
    return {"blocks": blocks, "state_bytes": float(state or 0), "per_row": float(per_row),
            "sample": sample, "sample_steps": steps}


def _count(state: bytes) -> int:
    from lineage.codec.step_decode import decode_block

    return decode_block(state).count


def print_shape(report: Report, shape: dict[str, Any], steps: int) -> float:
    """Print the per-step stored size; returns it (bytes, rounded up)."""
    blocks = shape["blocks"] or 1
    report.figure("stored blocks", shape["blocks"], "", fmt="{:,}",
                  note=f"avg {steps / blocks:,.0f} steps per block")
    state = shape["state_bytes"] / steps
    rows = shape["blocks"] * shape["per_row"] / steps
    report.figure("block state per step", state, "bytes", fmt="{:.1f}")
    report.figure("row costs per step", rows, "bytes", fmt="{:.2f}",
                  note=f"{shape['per_row']:.0f} bytes per block row: topic, stream id, "
                       "version, position, event-id row")
    report.figure("stored bytes per step", state + rows, "bytes", fmt="{:.1f}",
                  note="event store rows only, before page overhead and indexes")
    return state + rows


def payloads(sample: list[bytes], size: int) -> list[bytes]:
    """``size``-byte slices of real stored block states (compressed: incompressible)."""
    joined = b"".join(s[1:] for s in sample) or os.urandom(65536)
    return [joined[k:k + size] for k in range(0, len(joined) - size, size)][:BATCH * 4] or \
        [os.urandom(size)]


# -- baselines ---------------------------------------------------------------------------------


def sqlite_baseline(folder: str, rows: list[bytes], steps: int, label: str) -> float:
    """Raw sqlite3 executemany, one row per step, 1,000 per commit, WAL + synchronous=FULL."""
    path = os.path.join(folder, f"baseline_{label}.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE steps (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        count = len(rows)
        start = time.perf_counter()
        for first in range(0, steps, BATCH):
            batch = [(v, rows[v % count]) for v in range(first, min(first + BATCH, steps))]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO steps VALUES (?, ?)", batch)
            conn.execute("COMMIT")
        return steps / (time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)


def postgres_baseline(store: Store, rows: list[bytes], steps: int, label: str) -> float:
    """psycopg executemany (pipelined), one row per step, 1,000 per transaction,
    synchronous_commit=on."""
    import psycopg
    from psycopg import sql

    table = sql.SQL("{}.{}").format(sql.Identifier(store.schema),
                                    sql.Identifier(f"baseline_{label}"))
    with psycopg.connect(libpq_url(store.url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(sql.SQL("CREATE TABLE {} (seq bigint PRIMARY KEY, data bytea NOT NULL)")
                     .format(table))
        insert = sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table)
        count = len(rows)
        start = time.perf_counter()
        for first in range(0, steps, BATCH):
            batch = [(v, rows[v % count]) for v in range(first, min(first + BATCH, steps))]
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(insert, batch)
        rate = steps / (time.perf_counter() - start)
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
        return rate


def baseline(store: Store, rows: list[bytes], steps: int, label: str) -> float:
    if store.kind == "sqlite":
        return sqlite_baseline(os.path.dirname(store.url), rows, steps, label)
    return postgres_baseline(store, rows, steps, label)


# -- main --------------------------------------------------------------------------------------


def run_store(report: Report, kind: str, args: argparse.Namespace) -> None:
    """Ours, the stored shape, then ``--rounds`` of (baseline, ours again when rounds > 1)."""
    with temp_store(kind, args, report, section=f"{kind}: tracker ingest") as store:
        first = ingest(store.url, args, "bench-ingest-0")
        print_ingest(report, kind, first)
        shape = stored_shape(store)
        size = print_shape(report, shape, args.steps)
        rows = payloads(shape["sample"], max(1, round(size)))
        report.section(f"{kind}: raw baseline, one {len(rows[0])}-byte row per step")
        ours = [first["rate"]]
        bases = [baseline(store, rows, args.steps, "0")]
        for n in range(1, args.rounds):
            ours.append(ingest(store.url, args, f"bench-ingest-{n}")["rate"])
            bases.append(baseline(store, rows, args.steps, str(n)))
        driver = "sqlite3, WAL, synchronous=FULL" if kind == "sqlite" else \
            "psycopg pipeline, synchronous_commit=on"
        report.figure("baseline rows/s", bases[0], "steps/s", fmt="{:,.0f}",
                      note=f"executemany x{BATCH} per transaction, {driver}")
        report.figure("ours / baseline", ours[0] / bases[0], "", fmt="{:.2f}",
                      target=(">=", RATIO_TARGET) if kind == "sqlite" else None)
        if args.rounds > 1:
            ratios = [o / b for o, b in zip(ours, bases, strict=True)]
            report.note("rounds (ours, baseline, ratio): " + "; ".join(
                f"{o:,.0f} {b:,.0f} {r:.2f}" for o, b, r in zip(ours, bases, ratios, strict=True)))
            report.figure("median ratio over rounds", statistics.median(ratios), "",
                          fmt="{:.2f}", target=(">=", RATIO_TARGET) if kind == "sqlite" else None)


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None)
    parser.add_argument("--steps", type=int, default=300_000, help="steps to log (300,000)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate ours and the baseline this many times (1)")
    add_writer_profile_option(parser)
    args = parser.parse_args()

    report = Report.start("bench/ingest.py: sustained durable ingest of steps")
    metric_entropy(report)
    with writer_profile(report, args.profile):
        for kind in stores_wanted(args, report):
            run_store(report, kind, args)
    report.finish(args.json)


if __name__ == "__main__":
    main()
