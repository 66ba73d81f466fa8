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
registrations, checkpoints and evaluations are; 1,000,000 by default): rows/s for sealing and
for verify, and verify both ways in the same run, alternated ``--rounds`` times: as ``lineage
verify`` does it (a second process scans the first rows of a long log) and in one process.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import Report, add_options, bench_parser, stores_wanted, temp_store
from eventsourcing.persistence import StoredEvent
from ingest import ingest

from lineage.adapters.signing import generate_key
from lineage.application.log_scan import PAGE, scan
from lineage.application.sealing import BackgroundSealer
from lineage.bootstrap import open_store
from lineage.bootstrap_proof import open_sealer, open_verifier
from lineage.proof.canonical import stream_text
from lineage.proof.merkle import Frontier

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


def verify(url: str, public: bytes, *, one_process: bool = False) -> tuple[float, Any]:
    """Seconds of ``lineage verify`` (``one_process``: without the second process) and its
    report, with ``split`` set: whether the second process was used."""
    store = open_store(url)
    try:
        start = time.perf_counter()
        verifier = open_verifier(store, public_key=public)
        if one_process:
            verifier.first_rows = None
        helper = verifier.first_rows
        report = verifier.verify()
        seconds = time.perf_counter() - start
        report.split = helper is not None and helper.wanted(store.max_position())
        return seconds, report
    finally:
        store.close()


def compare_verify(url: str, public: bytes, rounds: int) -> dict[str, float]:
    """Median wall seconds and CPU seconds (this process and its children) of verify with and
    without the second process, alternated ``rounds`` times (first one way, then the other);
    ``used``: the rounds in which
    the second process was used."""
    times: dict[str, list[float]] = {}
    used = 0
    ways = [("two", False), ("one", True)]
    verify(url, public, one_process=True)  # warm-up (imports, page cache), not counted
    for round_ in range(rounds):  # each way first in every other round: no bias from order
        for name, one in ways if round_ % 2 == 0 else ways[::-1]:
            cpu = _cpu()
            seconds, report = verify(url, public, one_process=one)
            assert report.ok, report.problems
            times.setdefault(name, []).append(seconds)
            used += report.split and not one
            times.setdefault(name + " cpu", []).append(_cpu() - cpu)
    return {**{name: statistics.median(values) for name, values in times.items()}, "used": used}


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def log_pass_before(store: Any) -> int:
    """The pass over the log as ``lineage verify`` made it before ``read_rows`` (the baseline):
    ``read_log`` pages (one library ``Notification`` per row), the leaf loop reading attributes,
    the tree a leaf at a time. Returns the leaves."""
    streams: dict[Any, bytes] = {}
    topics: dict[str, bytes] = {}
    frontier, digests, position = Frontier(), bytearray(), 0
    while page := store.read_log(position + 1, PAGE):
        for row in page:
            stream = streams.get(row.originator_id)
            if stream is None:
                name = stream_text(row.originator_id).encode()
                stream = streams[row.originator_id] = b"\x00" + len(name).to_bytes(4, "big") + name
            label = topics.get(row.topic)
            if label is None:
                text = row.topic.encode()
                label = topics[row.topic] = len(text).to_bytes(4, "big") + text
            state = row.state
            leaf = hashlib.sha256(b"".join((stream, row.originator_version.to_bytes(8, "big", signed=True),
                                            label, len(state).to_bytes(4, "big"), state))).digest()
            digests += leaf[:8]
            frontier.append(leaf)
        position = page[-1].id
    return frontier.size


def log_pass_now(store: Any) -> int:
    """The same pass as ``lineage verify`` makes it now (``verification.scan``)."""
    return len(scan(store, set()).positions)


def compare_log_passes(url: str, rounds: int = 3) -> dict[str, float]:
    """Median seconds (wall and CPU) of each pass, alternated ``rounds`` times in one process."""
    store = open_store(url)
    times: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            for name, run in (("before", log_pass_before), ("now", log_pass_now)):
                wall, cpu = time.perf_counter(), time.process_time()
                run(store)
                times.setdefault(name, []).append(time.perf_counter() - wall)
                times.setdefault(name + " cpu", []).append(time.process_time() - cpu)
    finally:
        store.close()
    return {name: statistics.median(values) for name, values in times.items()}


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
    if not args.rows_only:
        run_ingest_and_blocks(report, kind, args, key, public)
    with temp_store(kind, args, report, section=f"{kind}: {args.rows:,} one-row events") as store:
        small_rows(store.url, args.rows)
        seconds, rows = seal_all(store.url, key)
        report.figure("sealing rows", rows / seconds, "rows/s", fmt="{:,.0f}")
        both = compare_verify(store.url, public, args.rounds)
        report.figure("verify rows", args.rows / both["two"], "rows/s", fmt="{:,.0f}",
                      target=(">=", VERIFY_TARGET), note=f"median of {args.rounds}; CPU "
                      f"{args.rows / both['two cpu']:,.0f} rows/s, both processes; second "
                      f"process used in {both['used']:.0f} of "
                      f"{args.rounds} rounds (not when the load average leaves no core free)")
        report.figure("verify rows, one process", args.rows / both["one"], "rows/s",
                      fmt="{:,.0f}", note=f"CPU {args.rows / both['one cpu']:,.0f} rows/s")
        report.figure("verify two processes / one", both["one"] / both["two"], "", fmt="{:.2f}")
        passes = compare_log_passes(store.url, args.rounds)
        for name in ("before", "now"):
            report.figure(f"log pass, {name}", args.rows / passes[name], "rows/s", fmt="{:,.0f}",
                          note=f"CPU {args.rows / passes[name + ' cpu']:,.0f} rows/s")
        report.figure("log pass now / before", passes["before"] / passes["now"], "", fmt="{:.2f}",
                      note=f"CPU {passes['before cpu'] / passes['now cpu']:.2f}")


def run_ingest_and_blocks(report: Report, kind: str, args: argparse.Namespace, key: str,
                          public: bytes) -> None:
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


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None, steps=300_000,
                          steps_help="steps to ingest")
    add_options(parser, verify_steps=(1_000_000, "events in the log verified"),
                rows=(1_000_000, "one-row events"),
                rows_only=(False, "only the one-row section (verify rows/s, one and two "
                                  "processes)"),
                rounds=(3, "alternated rounds of each way of verifying (medians)"),
                seal_every_s=(1.0, "how often the sealer beside the ingest seals, in seconds"))
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
