"""Sealing and verification throughput (issue 14), beside the durable ingest rate, same run.

Per store: (1) ``bench/ingest.py``'s ingest (``--steps`` steps to one run, durable); (2) a
sealer seals that whole log from nothing (``Sealer.seal``; the clock runs from reading the
first row to the last seal committed): events/s (steps count one each, as ingest counts them)
against the ingest rate, target >= 2x; (3) the ingest again with a ``BackgroundSealer`` on a
thread of the same process, then with ``lineage seal --follow`` in a process of its own, sealing
every ``--seal-every-s`` (1 s): their rates beside (1), the cost to the writer;
(4) ``Verifier.verify`` (``lineage verify``: recompute the tree, check every seal and its
signature) of a log of ``--verify-steps`` events (1,000,000 by default) in step blocks, target
>= 200,000 events/s; (5) the worst case, a log of ``--rows`` small events one row each (what
registrations, checkpoints and evaluations are): rows/s for sealing and for verify.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import Report, bench_parser, stores_wanted, temp_store
from eventsourcing.persistence import StoredEvent
from ingest import ingest

from lineage.adapters.signing import generate_key
from lineage.application.sealing import BackgroundSealer
from lineage.bootstrap import open_store
from lineage.bootstrap_proof import open_sealer, open_verifier

SEAL_RATIO_TARGET = 2.0
VERIFY_TARGET = 200_000  # events/s


def seal_all(url: str, key: str) -> tuple[float, int]:
    """Seconds to seal the whole log at ``url`` from nothing; rows sealed."""
    store = open_store(url)
    try:
        sealer = open_sealer(store, key=key)
        start = time.perf_counter()
        head = sealer.seal()
        return time.perf_counter() - start, head.size if head else 0
    finally:
        store.close()


def ingest_while_sealing(url: str, args: argparse.Namespace, key: str) -> dict[str, Any]:
    store = open_store(url)
    every = args.seal_every_s
    background = BackgroundSealer(open_sealer(store, key=key, every_s=every),
                                  poll_s=min(every, 1.0)).start()
    try:
        return ingest(url, args, "bench-ingest-sealed")
    finally:
        background.close()
        store.close()


def ingest_beside_a_sealer_process(url: str, args: argparse.Namespace, key: str) -> dict[str, Any]:
    """The ingest while ``lineage seal --follow`` seals the same store from its own process."""
    command = [str(Path(sys.executable).parent / "lineage"), "--db", url, "seal", "--follow",
               "--key", key, "--every-s", str(args.seal_every_s),
               "--poll", str(min(args.seal_every_s, 1.0))]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # started and following
        return ingest(url, args, "bench-ingest-beside")
    finally:
        child.terminate()
        child.wait(10)


def verify(url: str, public: bytes) -> tuple[float, Any]:
    store = open_store(url)
    try:
        start = time.perf_counter()
        report = open_verifier(store, public_key=public).verify()
        return time.perf_counter() - start, report
    finally:
        store.close()


def small_rows(url: str, rows: int) -> None:
    """``rows`` events of ~300 bytes, one row each, appended 1,000 to a transaction."""
    store = open_store(url)
    state = b'{"kind":"bench","payload":"' + b"x" * 260 + b'"}'
    try:
        for start in range(0, rows, 1000):
            stream = uuid.uuid4()
            batch = [StoredEvent(stream, v + 1, "bench:Row", state)
                     for v in range(min(1000, rows - start))]
            store.append(batch, [uuid.uuid4().hex for _ in batch])
    finally:
        store.close()


def run_store(report: Report, kind: str, args: argparse.Namespace, key: str, public: bytes) -> None:
    with temp_store(kind, args, report, section=f"{kind}: ingest, then sealing") as store:
        base = ingest(store.url, args, "bench-ingest")
        report.figure("ingest steps/s (durable)", base["rate"], "events/s", fmt="{:,.0f}")
        seconds, rows = seal_all(store.url, key)
        events = args.steps + rows - 1  # the run's block rows hold the steps
        report.figure("sealing", events / seconds, "events/s", fmt="{:,.0f}",
                      note=f"{rows} rows, {seconds:.2f} s")
        report.figure("sealing / ingest", events / seconds / base["rate"], "", fmt="{:.1f}",
                      target=(">=", SEAL_RATIO_TARGET))
        sealed = ingest_while_sealing(store.url, args, key)
        report.figure("ingest steps/s with a sealer thread", sealed["rate"], "events/s",
                      fmt="{:,.0f}", note=f"{sealed['rate'] / base['rate']:.2f} of the rate alone")
        beside = ingest_beside_a_sealer_process(store.url, args, key)
        report.figure("ingest steps/s, lineage seal --follow beside", beside["rate"], "events/s",
                      fmt="{:,.0f}", note=f"{beside['rate'] / base['rate']:.2f} of the rate alone")
    with temp_store(kind, args, report, section=f"{kind}: verify {args.verify_steps:,} events") as store:
        big = argparse.Namespace(**{**vars(args), "steps": args.verify_steps})
        ingest(store.url, big, "bench-verify")
        seal_all(store.url, key)
        seconds, result = verify(store.url, public)
        events = args.verify_steps + result.rows - 1
        report.figure("verify", events / seconds, "events/s", fmt="{:,.0f}",
                      target=(">=", VERIFY_TARGET), note=f"{result.rows} rows, {seconds:.2f} s, "
                      f"ok={result.ok}")
    with temp_store(kind, args, report, section=f"{kind}: {args.rows:,} one-row events") as store:
        small_rows(store.url, args.rows)
        seconds, rows = seal_all(store.url, key)
        report.figure("sealing rows", rows / seconds, "rows/s", fmt="{:,.0f}")
        seconds, result = verify(store.url, public)
        report.figure("verify rows", result.rows / seconds, "rows/s", fmt="{:,.0f}",
                      note=f"ok={result.ok}")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None)
    parser.add_argument("--steps", type=int, default=300_000, help="steps to ingest (300,000)")
    parser.add_argument("--verify-steps", type=int, default=1_000_000,
                        help="events in the log verified (1,000,000)")
    parser.add_argument("--rows", type=int, default=100_000, help="one-row events (100,000)")
    parser.add_argument("--seal-every-s", type=float, default=1.0,
                        help="how often the sealer beside the ingest seals (1 s)")
    args = parser.parse_args()
    report = Report.start("bench/verify.py: sealing and verify throughput")
    with tempfile.TemporaryDirectory() as folder:
        key = str(Path(folder) / "seal.pem")
        public = generate_key(key)
        for kind in stores_wanted(args, report):
            run_store(report, kind, args, key, public)
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
