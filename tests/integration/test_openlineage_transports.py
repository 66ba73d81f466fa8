"""The OpenLineage exporter through the ``openlineage-python`` client's own transports, as its
configuration (``OPENLINEAGE__TRANSPORT__*``, no ``OPENLINEAGE_URL``) names them: the file
transport writes every event to a real file and the console transport logs every event, each
the same events as the dry run, each valid against the bundled schema; without
``confluent-kafka`` a Kafka export says what to install instead of failing obscurely, and a
tracker trains on with a warning (delivery through Kafka: ``test_openlineage_kafka``)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lineage.bootstrap import open_openlineage_exporter
from lineage.cli.main import main
from lineage.config.openlineage import OpenLineageSettings
from tests.integration.test_openlineage import recorded, validate  # noqa: F401 (a fixture)


def client_configured(monkeypatch: pytest.MonkeyPatch, **transport: str) -> None:
    """The client's configuration in the environment, and nothing that would override it."""
    for variable in ("OPENLINEAGE_URL", "LINEAGE_OPENLINEAGE_URL", "OPENLINEAGE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    for key, value in transport.items():
        monkeypatch.setenv(f"OPENLINEAGE__TRANSPORT__{key.upper()}", value)


def export(url: str, **options: Any) -> Any:
    runner = open_openlineage_exporter(url, OpenLineageSettings.load({}), **options)
    try:
        runner.export_to_head()
    finally:
        runner.transport.close()
        runner.store.close()
    return runner


def dry_run(url: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    export(url, dry_run=out, from_start=True)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_file_transport_writes_every_event_once_and_valid(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        validate: Callable[[dict[str, Any]], None]) -> None:  # noqa: F811
    url = recorded(tmp_path, make_tracker)
    events = tmp_path / "events.jsonl"
    client_configured(monkeypatch, type="file", log_file_path=str(events), append="true")
    runner = export(url)
    assert runner.endpoint == "file transport (client configuration)"
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert written == dry_run(url) and len(written) == runner.stats.events > 5
    for event in written:
        validate(event)
    assert export(url).stats.events == 0  # from the tracked position: nothing new
    assert len(events.read_text().splitlines()) == len(written)


def test_the_console_transport_logs_every_event_valid(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        validate: Callable[[dict[str, Any]], None]) -> None:  # noqa: F811
    url = recorded(tmp_path, make_tracker)
    client_configured(monkeypatch, type="console")
    with caplog.at_level(logging.INFO, logger="openlineage.client.transport.console"):
        runner = export(url)
    logged = [json.loads(r.getMessage()) for r in caplog.records
              if r.name == "openlineage.client.transport.console"]
    assert logged == dry_run(url) and len(logged) == runner.stats.events
    for event in logged:
        validate(event)


def test_kafka_without_its_package_is_a_clear_configuration_error(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The configuration path only: the client builds its Kafka transport from the variables,
    which needs ``confluent-kafka`` (hidden here, whether installed or not) and a broker."""
    url = recorded(tmp_path, make_tracker)
    client_configured(monkeypatch, type="kafka", topic="lineage",
                      config='{"bootstrap.servers": "127.0.0.1:9"}')
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails
    code = main(["--db", url, "export", "openlineage"])
    err = capsys.readouterr().err
    assert code == 1 and "confluent_kafka" in err and "openlineage-python[kafka]" in err, err
    monkeypatch.setenv("LINEAGE_OPENLINEAGE_EXPORT", "on")
    with caplog.at_level(logging.WARNING, logger="lineage.openlineage"):
        tracker = make_tracker(str(tmp_path / "train.db"))
        with tracker.start_run("trains on") as run:
            run.log_step(1, {"loss": 1.0})
        tracker.close()
    assert any("openlineage-python[kafka]" in r.getMessage() for r in caplog.records)
