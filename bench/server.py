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

Beside MLflow: ``log_batch`` through MLflow's own tracking server (``mlflow server`` on SQLite)
when MLflow is importable (``--mlflow-python`` names an interpreter that has it), else the
line says it was not run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def timed_run(tracker: Any, name: str, steps: int) -> dict[str, Any]:
    """Log ``steps`` steps on a new run of ``tracker``: per-call times, and the seconds from
    the first call to ``flush()`` returning (everything committed)."""
    run = tracker.start_run(name)
    started = time.perf_counter()
    times = log_loop(run, steps)
    tracker.flush()
    elapsed = time.perf_counter() - started
    run.finish()
    sends = list(getattr(tracker.writer, "send_seconds", ()))
    tracker.close()
    return {"elapsed": elapsed, "times": times, "sends": sends}


def one_client(url: str, token: str, steps: int, spool: str) -> dict[str, Any]:
    return timed_run(lineage.Tracker(url, token=token, spool=spool), "bench-remote", steps)


def _client_process(args: tuple[str, str, int, str]) -> dict[str, Any]:
    result = one_client(*args)
    result.pop("times")
    return result


def local_baseline(folder: Path, steps: int) -> tuple[list[int], float]:
    tracker = lineage.Tracker(str(folder / "local.db"), export_otlp=False)
    result = timed_run(tracker, "bench-local", steps)
    return result["times"], result["elapsed"]


def report_calls(label: str, times: list[int]) -> None:
    us = [t / 1000 for t in times]
    print(f"  log_step caller cost, {label:<22} p50 {percentile(us, 50):6.2f} us   "
          f"p99 {percentile(us, 99):7.2f} us   mean {sum(us) / len(us):6.2f} us")


def mlflow_line(python: str | None, folder: Path, steps: int) -> str:
    if not python or not Path(python).exists():
        return "MLflow: not run (no interpreter with mlflow: pass --mlflow-python)"
    script = HERE / "mlflow_log_batch.py"
    done = subprocess.run([python, str(script), str(folder / "mlflow"), str(steps)],
                          capture_output=True, text=True, timeout=1800)
    return done.stdout.strip() or f"MLflow: failed ({done.stderr.strip()[-300:]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--postgres", help="PostgreSQL URL for the server's store (else SQLite)")
    parser.add_argument("--mlflow-python", default=os.environ.get("MLFLOW_PYTHON"))
    args = parser.parse_args()
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
            result = one_client(server.url, tokens[0], args.steps, str(folder / "spool"))
            local_times, local_elapsed = local_baseline(folder, args.steps)
            print(f"  end to end (committed on the server)   {args.steps / result['elapsed']:>10,.0f}"
                  f" steps/s   ({result['elapsed']:.2f} s)")
            print(f"  baseline: local tracker on SQLite      {args.steps / local_elapsed:>10,.0f}"
                  f" steps/s   ({local_elapsed:.2f} s)")
            report_calls("remote tracker", result["times"])
            report_calls("local tracker (baseline)", local_times)
            sends = result["sends"]
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
