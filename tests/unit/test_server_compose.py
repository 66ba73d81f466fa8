"""The lineage service in docker-compose.yml: on loopback, on PostgreSQL, ready-checked."""

from __future__ import annotations

from tests.unit.test_otlp_compose import published, services


def test_the_lineage_service_serves_the_shared_store_on_loopback() -> None:
    lineage = services()["lineage"]
    assert published(lineage) == {8470: "127.0.0.1"}
    assert lineage["environment"]["LINEAGE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in lineage["environment"]["LINEAGE_DATABASE_URL"]
    assert "lineage serve --host 0.0.0.0 --port 8470" in lineage["command"]
    assert lineage["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(lineage["healthcheck"]["test"])
