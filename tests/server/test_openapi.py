"""The OpenAPI document is checked in (docs/openapi.json) and served as it is."""

from __future__ import annotations

import json
from pathlib import Path

from lineage.adapters.server.app import create_app
from lineage.adapters.server.core import ServerCore
from tests.server.conftest import InProcessServer

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def current() -> dict[str, object]:
    core = ServerCore("memory://")
    try:
        return create_app(core).openapi()
    finally:
        core.close()


def test_the_checked_in_document_is_the_application_s() -> None:
    """Regenerate with: python -c 'from tests.server.test_openapi import write; write()'."""
    assert json.loads(DOCUMENT.read_text()) == current()


def test_the_server_serves_it(shared_server: InProcessServer) -> None:
    assert shared_server.http.get("/openapi.json").json() == json.loads(DOCUMENT.read_text())


def write() -> None:
    DOCUMENT.write_text(json.dumps(current(), indent=2, sort_keys=True) + "\n")
