"""Fixtures of the server tests: a real ``lineage serve`` on loopback over a SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.harness import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(str(tmp_path / "server.db"), tmp_path / "serve.log").start()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "spool"
    monkeypatch.setenv("LINEAGE_SPOOL_DIR", str(folder))
    return folder


class InProcessServer:
    """uvicorn serving ``create_app`` on a loopback port from a thread of this process."""

    def __init__(self, database: str, web: object = None, **limits: object) -> None:
        import threading

        import uvicorn

        from lineage.adapters.server.app import create_app
        from lineage.adapters.server.core import ServerCore
        from lineage.adapters.server.limits import Limits
        from tests.server.harness import free_port

        self.core = ServerCore(database)
        self.app = create_app(self.core, Limits(**limits), web)  # type: ignore[arg-type]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = database
        import httpx

        self.http = httpx.Client(base_url=self.url, timeout=60)  # one pool: no TLS set-up a call
        self.uvicorn = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning"))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def token(self, tenant: str = "team-a", actor: str = "alice",
              scopes: tuple[str, ...] = ("read", "write")) -> str:
        return self.core.tokens.create(tenant, actor, list(scopes))

    def stop(self) -> None:
        self.http.close()
        self.uvicorn.should_exit = True
        self.thread.join(60)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One server for a module's tests (each makes its own tenants and runs)."""
    folder = tmp_path_factory.mktemp("shared-server")
    running = InProcessServer(str(folder / "server.db"), body_bytes=1 << 20,
                              decoded_bytes=4 << 20, rate_per_s=1000.0, burst=2000,
                              failed_auth_burst=100_000)  # the matrix fails auth on purpose
    try:
        yield running
    finally:
        running.stop()
