"""Sustained durable ingest of step events, against a raw-driver baseline in the same run.

Logs ``--steps`` steps to one run as fast as the training thread can, then ``flush()``;
events/s = steps / (time from the first ``log_step`` to ``flush()`` returning), so every event
counted is committed (SQLite WAL + synchronous=FULL; PostgreSQL synchronous_commit=on).

Baseline (SQLite, same run, same machine moment): raw ``sqlite3`` ``executemany`` of rows the
size of our stored step rows (measured: length of ``state`` + topic + stream id), 1,000 rows per
transaction, WAL + synchronous=FULL, one commit per batch, into a table shaped like ours. A
second baseline also inserts a 32-hex event id per row into an id table in the same transaction,
as our store does. With PostgreSQL, a psycopg ``executemany`` baseline (1,000 rows per
transaction, synchronous commit) is printed too.

Targets: SQLite >= 50,000 events/s, PostgreSQL >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
import uuid
from typing import Any

from common import (
    Report,
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

TARGETS = {"sqlite": 50_000, "postgresql": 20_000}  # events/s
BATCH = 1_000


# -- ours --------------------------------------------------------------------------------------


def ingest(report: Report, url: str, args: argparse.Namespace, target: float) -> float:
    """Log ``args.steps`` steps, flush, print the figures; returns events/s."""
    series = metric_series(10_000)
    tracker = open_tracker(url, args)
    try:
        run = tracker.start_run("bench-ingest")
        tracker.flush()
        before = writer_stats(tracker)
        log_step = run.log_step
        steps = args.steps
        start = time.perf_counter()
        for i in range(steps):
            log_step(i, series[i % 10_000], epoch=i // 100_000)
        logged = time.perf_counter()
        tracker.flush()
        done = time.perf_counter()
        stats = stats_delta(writer_stats(tracker), before)
    finally:
        tracker.close()
    rate = steps / (done - start)
    report.figure("events/s (durable)", rate, "ev/s", fmt="{:,.0f}", target=(">=", target))
    report.figure("first log_step -> flush", done - start, "s", fmt="{:,.2f}")
    report.figure("caller loop (incl. blocking)", logged - start, "s", fmt="{:,.2f}",
                  note="log_step blocks while the queue is full")
    report.figure("final flush", done - logged, "s", fmt="{:,.2f}")
    print_writer_stats(report, stats, over="the measurement")
    return rate


# -- row sizes ---------------------------------------------------------------------------------


def sqlite_row_shape(path: str) -> dict[str, Any]:
    """Average stored sizes of our step rows, and a sample of real states."""
    from lineage.codec.steps import STEP_TOPIC

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        count, state, topic, stream = conn.execute(
            "SELECT count(*), avg(length(state)), avg(length(topic)), avg(length(originator_id))"
            " FROM stored_events WHERE topic = ?", (STEP_TOPIC,)).fetchone()
        sample = [row[0] for row in conn.execute(
            "SELECT state FROM stored_events WHERE topic = ? LIMIT 1000", (STEP_TOPIC,))]
    return {"stored_steps": count, "state_bytes": state, "topic_bytes": topic,
            "stream_id_bytes": stream, "event_id_bytes": 32, "topic": STEP_TOPIC,
            "sample": sample}


def postgres_row_shape(url: str, schema: str) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    from lineage.codec.steps import STEP_TOPIC

    with psycopg.connect(libpq_url(url)) as conn:
        count, state, topic = conn.execute(
            sql.SQL("SELECT count(*), avg(octet_length(state)), avg(octet_length(topic))"
                    " FROM {}.stored_events WHERE topic = %s").format(sql.Identifier(schema)),
            (STEP_TOPIC,)).fetchone()
    return {"stored_steps": count, "state_bytes": float(state), "topic_bytes": float(topic),
            "stream_id_bytes": 16, "event_id_bytes": 16}


def print_shape(report: Report, shape: dict[str, Any], steps: int) -> None:
    report.figure("stored step events", shape["stored_steps"], "", fmt="{:,}",
                  note="all committed" if shape["stored_steps"] == steps else "MISMATCH")
    row = (shape["state_bytes"] + shape["topic_bytes"] + shape["stream_id_bytes"]
           + shape["event_id_bytes"])
    report.figure("avg stored row", row, "bytes",
                  note=f"state {shape['state_bytes']:.0f} + topic {shape['topic_bytes']:.0f} "
                       f"+ stream id {shape['stream_id_bytes']:.0f} + version + event id "
                       f"{shape['event_id_bytes']}")


def sized_states(sample: list[bytes], length: int) -> list[bytes]:
    """Real stored states, trimmed or padded to exactly ``length`` bytes."""
    return [state[:length].ljust(length, b" ") for state in sample] or [b"x" * length]


def time_ordered_hex() -> str:
    return "%012x7%s" % (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF, os.urandom(10).hex()[:19])


# -- baselines ---------------------------------------------------------------------------------


def sqlite_baseline(folder: str, shape: dict[str, Any], steps: int, with_ids: bool) -> float:
    """Raw sqlite3 executemany, 1,000 rows per commit, WAL + synchronous=FULL; rows/s."""
    path = os.path.join(folder, f"baseline{'_ids' if with_ids else ''}.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version "
                     "INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, "
                     "originator_version))")
        conn.execute("CREATE TABLE event_ids (event_id TEXT PRIMARY KEY) WITHOUT ROWID")
        states = sized_states(shape["sample"], round(shape["state_bytes"]))
        stream, topic, count = uuid.uuid4().hex, shape["topic"], len(states)
        start = time.perf_counter()
        for first in range(0, steps, BATCH):
            rows = [(stream, v + 1, topic, states[v % count])
                    for v in range(first, min(first + BATCH, steps))]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", rows)
            if with_ids:
                conn.executemany("INSERT INTO event_ids VALUES (?)",
                                 [(time_ordered_hex(),) for _ in rows])
            conn.execute("COMMIT")
        return steps / (time.perf_counter() - start)
    finally:
        conn.close()


def postgres_baseline(url: str, schema: str, shape: dict[str, Any], sample: list[bytes],
                      steps: int) -> float:
    """psycopg executemany, 1,000 rows per transaction, synchronous commit; rows/s."""
    import psycopg
    from psycopg import sql

    table = sql.SQL("{}.baseline_events").format(sql.Identifier(schema))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(sql.SQL("CREATE TABLE {} (originator_id uuid NOT NULL, originator_version "
                             "bigint NOT NULL, topic text, state bytea, PRIMARY KEY "
                             "(originator_id, originator_version))").format(table))
        insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(table)
        states = sized_states(sample, round(shape["state_bytes"]))
        stream, count = uuid.uuid4(), len(states)
        from lineage.codec.steps import STEP_TOPIC

        start = time.perf_counter()
        for first in range(0, steps, BATCH):
            rows = [(stream, v + 1, STEP_TOPIC, states[v % count])
                    for v in range(first, min(first + BATCH, steps))]
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(insert, rows)
        return steps / (time.perf_counter() - start)


# -- main --------------------------------------------------------------------------------------


def run_sqlite(report: Report, args: argparse.Namespace) -> list[bytes]:
    with temp_store("sqlite", args, report, section="sqlite: tracker ingest") as store:
        path = store.url
        ours = ingest(report, path, args, TARGETS["sqlite"])
        shape = sqlite_row_shape(path)
        print_shape(report, shape, args.steps)
        report.section("sqlite: raw sqlite3 baseline")
        folder = os.path.dirname(path)
        base = sqlite_baseline(folder, shape, args.steps, with_ids=False)
        report.figure("baseline rows/s", base, "rows/s", fmt="{:,.0f}",
                      note=f"executemany x{BATCH}, WAL, synchronous=FULL, commit per batch")
        report.figure("ours / baseline", ours / base, "", fmt="{:.2f}")
        base_ids = sqlite_baseline(folder, shape, args.steps, with_ids=True)
        report.figure("baseline+ids rows/s", base_ids, "rows/s", fmt="{:,.0f}",
                      note="same, plus a 32-hex event id row per event (as our store does)")
        report.figure("ours / baseline+ids", ours / base_ids, "", fmt="{:.2f}")
        return shape["sample"]


def run_postgres(report: Report, args: argparse.Namespace, sample: list[bytes]) -> None:
    with temp_store("postgresql", args, report, section="postgresql: tracker ingest") as store:
        url, schema = store.url, store.schema
        ours = ingest(report, url, args, TARGETS["postgresql"])
        shape = postgres_row_shape(url, schema)
        print_shape(report, shape, args.steps)
        if sample:
            report.section("postgresql: raw psycopg baseline")
            base = postgres_baseline(url, schema, shape, sample, args.steps)
            report.figure("baseline rows/s", base, "rows/s", fmt="{:,.0f}",
                          note=f"executemany x{BATCH} per transaction, synchronous_commit=on")
            report.figure("ours / baseline", ours / base, "", fmt="{:.2f}")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None)
    parser.add_argument("--steps", type=int, default=300_000, help="steps to log (300,000)")
    add_writer_profile_option(parser)
    args = parser.parse_args()

    report = Report.start("bench/ingest.py: sustained durable ingest of step events")
    kinds = stores_wanted(args, report)
    sample: list[bytes] = []
    with writer_profile(report, args.profile):
        if "sqlite" in kinds:
            sample = run_sqlite(report, args)
        if "postgresql" in kinds:
            if not sample:  # no SQLite run to take real states from: make some
                sample = [b'{"step":%d}' % i for i in range(1000)]
            run_postgres(report, args, sample)
    report.finish(args.json)


if __name__ == "__main__":
    main()
