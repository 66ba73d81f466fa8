"""The write path through a real server: the remote tracker keeps the API; a server outage
(kill -9, restart) loses nothing and duplicates nothing; a client killed with a full spool
delivers on its next start, or through ``lineage sync``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import lineage
from lineage.bootstrap import open_store
from tests.server.harness import Server


def stored_steps(database: str, run_id: object) -> list[int]:
    with lineage.Tracker(database, create=False, export_otlp=False) as tracker:
        return [step.step for step in tracker.steps(run_id)]


def test_a_remote_run_is_stored_with_the_token_s_tenant_and_actor(server: Server,
                                                                   spool_dir: Path) -> None:
    token = server.token("team-a", "alice")
    tracker = lineage.Tracker(server.url, token=token)
    with tracker.start_run("sft", job={"model": "m"}) as run:
        for step in range(1, 501):
            run.log_step(step, {"loss": 1 / step})
    tracker.close()
    assert server.stop() in (0, -15)  # SIGTERM (uvicorn re-raises it once it has shut down)
    assert "stopped; every writer drained" in server.log.read_text()
    assert "Traceback" not in server.log.read_text()
    assert stored_steps(server.database, run.id) == list(range(1, 501))
    with lineage.Tracker(server.database, create=False, export_otlp=False) as local:
        rows = local.audit(subject=run.id)
    assert {row["actor"] for row in rows} == {"alice"}
    assert {row["tenant_id"] for row in rows} == {"team-a"}
    assert not list(spool_dir.rglob("*.spool"))  # all acknowledged: the spool is gone


def test_the_server_killed_mid_run_loses_and_repeats_nothing(tmp_path: Path, spool_dir: Path) -> None:
    server = Server(str(tmp_path / "server.db"), tmp_path / "serve.log").start()
    token = server.token()
    tracker = lineage.Tracker(server.url, token=token)
    run = tracker.start_run("outage")
    try:
        for step in range(1, 3001):
            run.log_step(step, {"loss": float(step)})
            if step == 1000:
                tracker.flush()
                server.kill()  # mid-run, with steps in flight
            if step == 2000:
                run.save_checkpoint(_file(tmp_path, "ckpt-2000"), step=2000)  # while it is down
                time.sleep(0.5)  # the shipper finds the server gone, keeps the batch
                server.start()
        run.finish()
        tracker.flush()
        tracker.close()
    finally:
        server.kill()
    assert stored_steps(server.database, run.id) == list(range(1, 3001))
    store = open_store(server.database, create=False)
    try:
        checkpoints = [e for e in store.read_stream(run.id)
                       if e.topic.endswith("CheckpointSaved")]
    finally:
        store.close()
    assert len(checkpoints) == 1


CLIENT = textwrap.dedent("""
    import os, sys, time, lineage
    tracker = lineage.Tracker(sys.argv[1], token=sys.argv[2])
    run = tracker.start_run("killed", run_id=sys.argv[3], wait=False)
    for step in range(1, 2001):
        run.log_step(step, {"loss": 0.5})
    tracker.flush()          # the server is away: returns once all is in the spool
    print("spooled", flush=True)
    time.sleep(60)           # killed here
""")


def _killed_client(server: Server, token: str, run_id: str, spool: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LINEAGE_SPOOL_DIR": str(spool)}
    return subprocess.Popen([sys.executable, "-c", CLIENT, server.url, token, run_id],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_clients_killed_with_full_spools_deliver_on_next_start_or_by_sync(tmp_path: Path) -> None:
    """Two training processes record while the server is down and are killed (kill -9) with
    their steps in their spools: the next tracker started on the first machine sends its
    spool; `lineage sync` sends the second's."""
    server = Server(str(tmp_path / "server.db"), tmp_path / "serve.log")
    token = server.token()
    first, second = tmp_path / "spool-1", tmp_path / "spool-2"
    run_ids = ["4a0a5f0e-53a7-4b8e-9a3e-0c3c2d1f7a11", "5b1b6f1f-64b8-4c9f-8b4f-1d4d3e2f8b22"]
    clients = [_killed_client(server, token, run_id, spool)
               for run_id, spool in zip(run_ids, (first, second), strict=True)]
    try:
        for client in clients:
            assert client.stdout is not None and client.stdout.readline().strip() == "spooled"
    finally:
        for client in clients:
            client.kill()
            client.wait(10)
    assert list(first.rglob("*.spool")) and list(second.rglob("*.spool"))
    server.start()
    try:
        tracker = lineage.Tracker(server.url, token=token, spool=first)  # the next start
        tracker.flush()  # waits for the spool it took over, too
        tracker.close()
        assert stored_steps(server.database, run_ids[0]) == list(range(1, 2001))
        assert not list(first.rglob("*.spool"))
        lineage_cli = str(Path(sys.executable).parent / "lineage")
        done = subprocess.run([lineage_cli, "sync", "--url", server.url, "--token", token,
                               "--spool-dir", str(second), "--json"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sent"] >= 2  # the start_run item and the step items
        assert stored_steps(server.database, run_ids[1]) == list(range(1, 2001))
        assert not list(second.rglob("*.spool"))
    finally:
        server.kill()


def _file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.safetensors"
    path.write_bytes(name.encode())
    return path


@pytest.mark.postgres
def test_a_server_on_postgresql_takes_chosen_step_ids_once(postgres_url: str, tmp_path: Path) -> None:
    """The server on PostgreSQL; a step logged with its own event id, twice, is stored once."""
    from tests.server.conftest import InProcessServer

    server = InProcessServer(postgres_url)
    try:
        tracker = lineage.Tracker(server.url, token=server.token(), spool=tmp_path / "spool")
        run = tracker.start_run("on postgres")
        chosen = "0f0f0f0f-1111-4222-8333-444444444444"
        for step in range(1, 101):
            run.log_step(step, {"loss": 0.1}, event_id=chosen if step == 50 else None)
        run.log_step(50, {"loss": 0.1}, event_id=chosen)  # a retry of step 50: a no-op
        run.finish()
        tracker.close()
    finally:
        server.stop()
    assert stored_steps(postgres_url, run.id) == list(range(1, 101))
