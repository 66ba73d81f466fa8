"""A real ``lineage serve`` on a loopback port, in its own process (so tests can kill -9 it
and start it again on the same store), and tokens for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from lineage.adapters.server.tokens import TokenStore
from lineage.bootstrap import open_store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``lineage serve`` on ``database`` at ``url``; ``start``, ``kill`` (SIGKILL), ``stop``
    (SIGTERM: graceful)."""

    def __init__(self, database: str, log: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def token(self, tenant: str = "team-a", actor: str = "alice",
              scopes: tuple[str, ...] = ("read", "write")) -> str:
        store = open_store(self.database)
        engine = store.database.engine()
        try:
            return TokenStore(engine).create(tenant, actor, list(scopes))
        finally:
            engine.dispose()
            store.close()

    def start(self) -> Server:
        env = {**os.environ, "LINEAGE_DATABASE_URL": self.database}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "lineage"), "serve", "--port", str(self.port),
                 *self.extra], env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lineage serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("lineage serve did not become ready")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def get(self, path: str, token: str | None, **params: Any) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)
