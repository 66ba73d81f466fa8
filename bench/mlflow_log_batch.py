"""MLflow's ``log_batch`` through its own tracking server (``mlflow server`` on SQLite), the
baseline of bench/server.py; run with an interpreter that has MLflow installed:

    python bench/mlflow_log_batch.py FOLDER STEPS

Prints one line: steps a second (3 metrics a step; MLflow takes at most 1,000 metrics a call,
so 333 steps a call), committed when ``log_batch`` returns.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

STEPS_A_CALL = 333


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    folder, steps = Path(sys.argv[1]), int(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root", str(folder / "art"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("bench"))
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        started = time.perf_counter()
        for first in range(1, steps + 1, STEPS_A_CALL):
            metrics = [Metric(name, value, now, step)
                       for step in range(first, min(first + STEPS_A_CALL, steps + 1))
                       for name, value in (("loss", 1.0 / step), ("lr", 1e-4), ("grad_norm", 0.5))]
            client.log_batch(run_id, metrics=metrics)
        elapsed = time.perf_counter() - started
        print(f"MLflow {__import__('mlflow').__version__} log_batch through mlflow server on "
              f"SQLite: {steps / elapsed:,.0f} steps/s ({steps:,} steps, {elapsed:.2f} s)")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
