"""Fixtures for the Tinker integration: the real SDK against the fake service on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TINKER_TELEMETRY", "0")

tinker = pytest.importorskip("tinker")

from lineage import Tracker  # noqa: E402
from lineage.adapters.tinker.fake_server import FakeTinkerServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[FakeTinkerServer]:
    with FakeTinkerServer() as running:
        yield running


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    with Tracker(f"sqlite:///{tmp_path / 'lineage.db'}") as opened:
        yield opened


@pytest.fixture
def service(server: FakeTinkerServer) -> Iterator[object]:
    client = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fake")
    yield client


def datum(n: int = 3) -> object:
    from tinker import types

    return types.Datum(model_input=types.ModelInput.from_ints(list(range(1, n + 1))),
                       loss_fn_inputs={"target_tokens": list(range(2, n + 2)),
                                       "weights": [1.0] * n})


def train(client: object, steps: int, *, tokens: int = 3) -> None:
    """``steps`` times forward_backward + optim_step, submitted before waiting (the pattern
    the Tinker docs recommend)."""
    from tinker import types

    for _ in range(steps):
        fb = client.forward_backward([datum(tokens)], "cross_entropy")  # type: ignore[attr-defined]
        opt = client.optim_step(types.AdamParams(learning_rate=1e-4))  # type: ignore[attr-defined]
        fb.result(timeout=30)
        opt.result(timeout=30)
