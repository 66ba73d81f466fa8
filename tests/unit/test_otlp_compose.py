"""docker-compose.yml stays correct without a Docker engine: parse it and check what matters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document["services"]


def published(service: dict[str, Any]) -> dict[int, str]:
    """container port -> host address, for the short ``host:published:target`` syntax."""
    ports = {}
    for entry in service.get("ports", []):
        match = re.fullmatch(r"(?P<host>[\d.]+):(?P<published>\d+):(?P<target>\d+)", str(entry))
        assert match, f"{entry!r}: publish as ADDRESS:PORT:PORT so the address is explicit"
        assert match["published"] == match["target"], entry
        ports[int(match["target"])] = match["host"]
    return ports


def test_jaeger_is_v2_pinned_with_otlp_and_ui_on_loopback() -> None:
    jaeger = services()["jaeger"]
    image, _, tag = jaeger["image"].rpartition(":")
    assert image == "jaegertracing/jaeger" and re.fullmatch(r"2\.\d+\.\d+", tag), jaeger["image"]
    assert published(jaeger) == {4317: "127.0.0.1", 4318: "127.0.0.1", 16686: "127.0.0.1"}


def test_postgres_has_a_health_check_and_is_on_loopback() -> None:
    postgres = services()["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", postgres["image"]), postgres["image"]
    assert published(postgres) == {5432: "127.0.0.1"}
    check = postgres["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(check)


def test_every_published_port_is_bound_to_loopback() -> None:
    for name, service in services().items():
        assert set(published(service).values()) <= {"127.0.0.1"}, name
