"""The lineage server end to end (issue 13): remote trackers streaming steps to ``lineage serve``.

    python bench/server.py                       # one client, loopback server on SQLite
    python bench/server.py --clients 8 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

One client: ``--steps`` steps (three float metrics) logged in a tight loop through a remote
tracker; "end to end" is steps / (first ``log_step`` -> ``flush()`` returned), and flush returns
once the server acknowledged everything, which it does only after its writer committed it. The
same loop through a local tracker on its own SQLite file is the baseline, in the same run, for
the figure that must not change: ``log_step``'s caller cost (percentiles of per-call times).
Several clients (processes, one token each): the aggregate rate, and the p50/p99 of a batch's
round trip (send -> acknowledged, as each client's shipper timed it).

``--rounds N`` repeats the one-client pair (remote, then local) N times and reports medians and
the median ratio: the machine is shared, so single figures are noisy. CPU per step (the client
process, the server process from /proc, the local tracker's process) is less sensitive to load
than wall time and is printed too. ``--spool-sync NORMAL`` runs the remote tracker's spool with
``synchronous=NORMAL`` instead of FULL (the cost of fsyncing each spool append).

Beside MLflow: ``log_batch`` through MLflow's own tracking server (``mlflow server`` on SQLite)
when MLflow is importable (``--mlflow-python`` names an interpreter that has it), else the
line says it was not run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import add_options

import lineage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.server.harness import Server  # noqa: E402  (a real lineage serve, as the tests use)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def log_loop(run: Any, steps: int) -> list[int]:
    """Per-call ns of ``steps`` log_step calls, three metrics each."""
    times = []
    clock = time.perf_counter_ns
    put = run.log_step
    for step in range(1, steps + 1):
        metrics = {"loss": 1.0 / step, "lr": 1e-4, "grad_norm": 0.5}
        started = clock()
        put(step, metrics)
        times.append(clock() - started)
    return times


def timed_run(tracker: Any, name: str, steps: int, server_pid: int | None = None) -> dict[str, Any]:
    """Log ``steps`` steps on a new run of ``tracker``: per-call times, the seconds from the
    first call to ``flush()`` returning (everything committed), and the CPU seconds this
    process (and the server's, when given) spent meanwhile."""
    run = tracker.start_run(name)
    tracker.flush()
    cpu, server_cpu = time.process_time(), process_cpu(server_pid)
    started = time.perf_counter()
    times = log_loop(run, steps)
    tracker.flush()
    elapsed = time.perf_counter() - started
    cpu, server_cpu = time.process_time() - cpu, process_cpu(server_pid) - server_cpu
    run.finish()
    sends = list(getattr(tracker.writer, "send_seconds", ()))
    tracker.close()
    return {"elapsed": elapsed, "times": times, "sends": sends, "cpu": cpu,
            "server_cpu": server_cpu}


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (0 when None)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_client(url: str, token: str, steps: int, spool: str,
               server_pid: int | None = None) -> dict[str, Any]:
    return timed_run(lineage.Tracker(url, token=token, spool=spool), "bench-remote", steps,
                     server_pid)


def _client_process(args: tuple[str, str, int, str]) -> dict[str, Any]:
    result = one_client(*args)
    result.pop("times")
    return result


def local_baseline(folder: Path, steps: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    return timed_run(lineage.Tracker(str(folder / "local.db"), export_otlp=False),
                     "bench-local", steps)


def report_calls(label: str, times: list[int]) -> None:
    us = [t / 1000 for t in times]
    print(f"  log_step caller cost, {label:<22} p50 {percentile(us, 50):6.2f} us   "
          f"p99 {percentile(us, 99):7.2f} us   mean {sum(us) / len(us):6.2f} us")


def one_client_rounds(server: Any, token: str, args: Any, folder: Path) -> list[float]:
    """The one-client figures over ``args.rounds`` rounds (remote, then local, each round)."""
    pid = server.process.pid if server.process is not None else None
    remote, local = [], []
    for number in range(args.rounds):
        remote.append(one_client(server.url, token, args.steps, str(folder / "spool"), pid))
        local.append(local_baseline(folder / f"local-{number}", args.steps))
        print(f"  round {number + 1}: remote {args.steps / remote[-1]['elapsed']:>9,.0f} steps/s,"
              f" local {args.steps / local[-1]['elapsed']:>9,.0f} steps/s, ratio "
              f"{local[-1]['elapsed'] / remote[-1]['elapsed']:.3f}", flush=True)
    middle = statistics.median
    print(f"  end to end (committed on the server)   "
          f"{middle(args.steps / r['elapsed'] for r in remote):>10,.0f} steps/s (median)")
    print(f"  baseline: local tracker on SQLite      "
          f"{middle(args.steps / r['elapsed'] for r in local):>10,.0f} steps/s (median)")
    print(f"  ratio remote / local (median of rounds) "
          f"{middle(lo['elapsed'] / re['elapsed'] for re, lo in zip(remote, local, strict=True)):.3f}")
    us = 1e6 / args.steps
    print(f"  CPU per step: remote client {middle(r['cpu'] for r in remote) * us:5.1f} us + "
          f"server {middle(r['server_cpu'] for r in remote) * us:5.1f} us; local tracker "
          f"{middle(r['cpu'] for r in local) * us:5.1f} us (medians)")
    report_calls("remote tracker", [t for r in remote for t in r["times"]])
    report_calls("local tracker (baseline)", [t for r in local for t in r["times"]])
    return [s for r in remote for s in r["sends"]]


def mlflow_line(python: str | None, folder: Path, steps: int) -> str:
    if not python or not Path(python).exists():
        return "MLflow: not run (no interpreter with mlflow: pass --mlflow-python)"
    script = HERE / "mlflow_log_batch.py"
    done = subprocess.run([python, str(script), str(folder / "mlflow"), str(steps)],
                          capture_output=True, text=True, timeout=1800)
    return done.stdout.strip() or f"MLflow: failed ({done.stderr.strip()[-300:]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_options(parser, steps=(300_000, "steps a client logs"),
                clients=(1, "clients logging at once"), rounds=(1, "rounds"))
    parser.add_argument("--postgres", help="PostgreSQL URL for the server's store (else SQLite)")
    parser.add_argument("--spool-sync", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--mlflow-python", default=os.environ.get("MLFLOW_PYTHON"))
    args = parser.parse_args()
    if args.spool_sync != "FULL":  # the bench's own switch (a tracker always spools FULL)
        from lineage.adapters import spool

        spool.SqliteSpool.new.__func__.__kwdefaults__["synchronous"] = args.spool_sync
    folder = Path(tempfile.mkdtemp(prefix="lineage-bench-server-"))
    schema = f"lineage_bench_{os.getpid()}"
    database = (_schema(args.postgres, schema, create=True) if args.postgres
                else str(folder / "server.db"))
    server = Server(database, folder / "serve.log").start()
    print(f"lineage serve on {'PostgreSQL' if args.postgres else 'SQLite'}, {args.clients} "
          f"client(s), {args.steps:,} steps in all, 3 metrics a step")
    try:
        tokens = [server.token(f"bench{n}", f"client{n}") for n in range(args.clients)]
        if args.clients == 1:
            sends = one_client_rounds(server, tokens[0], args, folder)
        else:
            share = args.steps // args.clients
            jobs = [(server.url, token, share, str(folder / f"spool{n}"))
                    for n, token in enumerate(tokens)]
            started = time.perf_counter()
            with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
                results = pool.map(_client_process, jobs)
            elapsed = time.perf_counter() - started
            print(f"  aggregate (committed on the server)    {share * args.clients / elapsed:>10,.0f}"
                  f" steps/s   ({elapsed:.2f} s, process start included)")
            slowest = max(r["elapsed"] for r in results)
            print(f"  aggregate over the logging loops       {share * args.clients / slowest:>10,.0f}"
                  " steps/s")
            sends = [s for r in results for s in r["sends"]]
        ms = [s * 1000 for s in sends]
        print(f"  batch round trip ({len(ms)} batches)       p50 {percentile(ms, 50):7.1f} ms   "
              f"p99 {percentile(ms, 99):7.1f} ms")
        # MLflow's server takes ~6 ms a step here: 20,000 steps are a long enough sample
        print("  " + mlflow_line(args.mlflow_python, folder, min(args.steps, 20_000)))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        if args.postgres:
            _schema(args.postgres, schema, create=False)


def _schema(url: str, schema: str, *, create: bool) -> str:
    """A fresh schema on the PostgreSQL server (created, or dropped afterwards)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://").split("?")[0],
                         autocommit=True) as conn:
        statement = "CREATE SCHEMA {}" if create else "DROP SCHEMA IF EXISTS {} CASCADE"
        conn.execute(sql.SQL(statement).format(sql.Identifier(schema)))
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


if __name__ == "__main__":
    main()
