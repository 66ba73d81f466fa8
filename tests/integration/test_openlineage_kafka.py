"""The OpenLineage exporter through Kafka, configured as the ``openlineage-python`` client
configures its Kafka transport (``OPENLINEAGE__TRANSPORT__*``), against librdkafka's mock
cluster (``tests.kafka_mock``: the Kafka protocol over loopback TCP), read back by a real
consumer: every event arrives, valid against the schema, keyed by its run's job so a run's
events keep their order in one partition; the position moves only past what the broker
acknowledged, so an export to an unreachable broker fails at once with a clear error, moves
nothing, and the next export delivers everything (at least once: nothing lost)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lineage.bootstrap import open_openlineage_exporter
from lineage.cli.main import main
from lineage.config.openlineage import OpenLineageSettings
from lineage.errors import ExportError
from tests.integration.test_openlineage import recorded, validate  # noqa: F401 (a fixture)
from tests.integration.test_openlineage_transports import client_configured, dry_run
from tests.kafka_mock import MockKafka
from tests.otlp_receiver import free_port

TOPIC = "lineage-events"


@pytest.fixture
def kafka() -> Iterator[MockKafka]:
    cluster = MockKafka()
    yield cluster
    cluster.close()


def to_kafka(monkeypatch: pytest.MonkeyPatch, servers: str, timeout_s: float = 10.0) -> None:
    client_configured(monkeypatch, type="kafka", topic=TOPIC,
                      config=json.dumps({"bootstrap.servers": servers, "log_level": 0}))
    monkeypatch.setenv("LINEAGE_OPENLINEAGE_TIMEOUT_S", str(timeout_s))


def exporter(url: str) -> Any:
    return open_openlineage_exporter(url, OpenLineageSettings.load())


def export(url: str) -> tuple[Any, ExportError | None, int]:
    """Export to the head: (the runner, the ExportError it raised or None, the log's head)."""
    runner = exporter(url)
    try:
        runner.export_to_head()
        return runner, None, runner.head()
    except ExportError as error:
        return runner, error, runner.head()
    finally:
        runner.transport.close()
        runner.store.close()


def decoded(messages: list[tuple[str, bytes, int]]) -> list[dict[str, Any]]:
    return [json.loads(value) for _, value, _ in messages]


def canonical(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in events)


def test_every_event_reaches_the_broker_acknowledged_valid_and_keyed_by_run(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        kafka: MockKafka, validate: Callable[[dict[str, Any]], None]) -> None:  # noqa: F811
    url = recorded(tmp_path, make_tracker)
    expected = dry_run(url)
    to_kafka(monkeypatch, kafka.bootstrap)
    runner, error, head = export(url)
    assert error is None and runner.position == head
    assert runner.endpoint == f"Kafka topic '{TOPIC}' at {kafka.bootstrap}"
    assert runner.stats.events == len(expected) > 5 and runner.position > 0
    messages = kafka.read(TOPIC, len(expected))
    assert canonical(decoded(messages)) == canonical(expected)  # each once, nothing else
    for event in decoded(messages):
        validate(event)
    for key, value, partition in messages:
        event = json.loads(value)
        facet = event["run"]["facets"].get("parent")
        job = facet["root"]["job"] if facet else event["job"]
        assert key == f"run:{job['namespace']}/{job['name']}"
        # a key's events share a partition, in the order the exporter made them
        same = [json.loads(v) for k, v, p in messages if k == key and p == partition]
        assert same == [e for e in expected if e in same]
    assert {k for k, _, _ in messages} == {"run:lineage/sft", "run:lineage/stopped"}
    assert export(url)[0].stats.events == 0  # from the tracked position: nothing new


def test_an_unreachable_broker_moves_nothing_and_the_next_export_delivers_everything(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        kafka: MockKafka, capsys: pytest.CaptureFixture[str]) -> None:
    url = recorded(tmp_path, make_tracker)
    expected = dry_run(url)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    to_kafka(monkeypatch, dead, timeout_s=1.0)
    runner, failed, head = export(url)
    assert failed is not None and runner.stats.events == 0
    assert runner.position < head  # at most past notes that make no event
    assert "not acknowledged by the broker within 1 s" in str(failed), failed
    assert f"Kafka topic '{TOPIC}' at {dead}" in str(failed)
    assert main(["--db", url, "export", "openlineage"]) == 1  # the CLI says so and exits 1
    assert "not acknowledged by the broker" in capsys.readouterr().err

    to_kafka(monkeypatch, kafka.bootstrap)  # the broker is back
    first, error, head = export(url)
    assert error is None and first.stats.events == len(expected) and first.position == head

    tracker = make_tracker(url, export_otlp=False)  # more happens while the broker is down
    with tracker.start_run("later") as run:
        run.log_step(1, {"loss": 1.0})
    tracker.close()
    everything = dry_run(url)
    to_kafka(monkeypatch, dead, timeout_s=1.0)
    again, failed, _ = export(url)
    assert failed is not None and again.position == first.position
    to_kafka(monkeypatch, kafka.bootstrap)
    last, error, head = export(url)
    assert error is None and last.position == head
    assert last.stats.events == len(everything) - len(expected) == 2  # START, COMPLETE
    received = canonical(decoded(kafka.read(TOPIC, len(everything))))
    assert set(received) == set(canonical(everything))  # at least once: nothing lost


def test_a_refused_event_stops_the_export_right_after_the_acknowledged_ones(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        kafka: MockKafka) -> None:
    """An event over the producer's ``message.max.bytes`` is refused: the position moves past
    exactly the events before it (acknowledged one by one), a rerun refuses it again without
    re-sending them, and a larger limit delivers the rest: each event once."""
    url = recorded(tmp_path, make_tracker)
    expected = dry_run(url)
    sizes = [len(json.dumps(e, sort_keys=True, separators=(",", ":"))) for e in expected]
    limit = 2200
    first_big = next(i for i, size in enumerate(sizes) if size > limit + 100)
    assert 0 < first_big < len(expected) - 1 and max(sizes[:first_big]) < limit - 100
    to_kafka(monkeypatch, kafka.bootstrap)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__CONFIG", json.dumps(
        {"bootstrap.servers": kafka.bootstrap, "message.max.bytes": limit, "log_level": 0}))
    for attempt in range(2):  # the page starts at the position: the refused event comes
        runner, failed, head = export(url)  # after first_big events, then first of all
        assert failed is not None and "MSG_SIZE_TOO_LARGE" in str(failed), failed
        refused = f"event {first_big + 1 if attempt == 0 else 1} of"
        assert refused in str(failed) and runner.position < head
        assert runner.stats.events == (first_big if attempt == 0 else 0)
        sent = canonical(decoded(kafka.read(TOPIC, first_big)))
        assert sent == canonical(expected[:first_big])  # the rerun sent none of them again
    to_kafka(monkeypatch, kafka.bootstrap)
    runner, error, head = export(url)
    assert error is None and runner.position == head
    assert canonical(decoded(kafka.read(TOPIC, len(expected)))) == canonical(expected)


def test_a_tracker_exports_to_kafka_in_the_background(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        kafka: MockKafka, validate: Callable[[dict[str, Any]], None]) -> None:  # noqa: F811
    """The background exporter (``LINEAGE_OPENLINEAGE_EXPORT=on``: the client's own
    configuration) delivers through Kafka while training, and ``close`` waits for it."""
    to_kafka(monkeypatch, kafka.bootstrap)
    monkeypatch.setenv("LINEAGE_OPENLINEAGE_EXPORT", "on")
    tracker = make_tracker(str(tmp_path / "train.db"), export_otlp=False)
    with tracker.start_run("in-the-background") as run:
        run.log_step(1, {"loss": 1.0})
    tracker.close()
    events = decoded(kafka.read(TOPIC, 2))
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert {e["run"]["runId"] for e in events} == {str(run.id)}
    for event in events:
        validate(event)


def test_kafka_inside_a_composite_transport_is_warned_of(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The composite transport only logs what fails: no acknowledgement can be had through
    it, and the exporter says so rather than promise at least once."""
    client_configured(monkeypatch, type="composite", transports__first__type="kafka",
                      transports__first__topic=TOPIC, transports__second__type="console",
                      transports__first__config=json.dumps(
                          {"bootstrap.servers": f"127.0.0.1:{free_port()}", "log_level": 0}))
    with caplog.at_level("WARNING", logger="lineage.adapters.openlineage.compose"):
        runner = exporter(recorded(tmp_path, make_tracker))
    try:
        assert "composite transport is not acknowledged" in caplog.text
        assert not hasattr(runner.transport, "emit_all")
    finally:
        runner.store.close()
