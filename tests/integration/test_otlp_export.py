"""The exporter against real OTLP receivers on loopback (HTTP and gRPC), on real stores.

At-least-once delivery: spans arrive with their structure; a re-export sends the same bytes; a
receiver that is down, answers 503/UNAVAILABLE or is slow delays delivery and loses nothing;
the position only moves past what was delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
from lineage.config.otlp import OtlpSettings
from lineage.errors import CollectorUnavailableError, ExportRejectedError
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, Receiver
from tests.otlp_scenario import Scenario, deterministic_tracker, record_scenario

# 2 runs (root + finish each), 2 step groups (one per run), 2 checkpoints, evaluate, failure,
# recovery
SCENARIO_SPANS = 11
UNAVAILABLE = {"http": 503, "grpc": grpc.StatusCode.UNAVAILABLE}
REFUSED = {"http": 400, "grpc": grpc.StatusCode.INVALID_ARGUMENT}


@pytest.fixture(params=["http", "grpc"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server: Receiver = HttpReceiver() if request.param == "http" else GrpcReceiver()
    server.protocol = request.param  # type: ignore[attr-defined]
    yield server.start()  # type: ignore[attr-defined]
    server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def recorded(durable_url: str, make_tracker: Callable[..., Any]) -> tuple[str, Any, Scenario]:
    tracker, clock = deterministic_tracker(durable_url, make_tracker)
    return durable_url, tracker, record_scenario(tracker, clock)


@pytest.fixture
def make_runner(recorded: tuple[str, Any, Scenario],
                receiver: Receiver) -> Iterator[Callable[..., Any]]:
    """Makes exporters from the recorded store to ``receiver`` (keyword arguments: the runner's
    ``retry_for_s``, ``start`` and ``track``, and OTLP settings); their transports are closed
    after the test."""
    url, tracker, _ = recorded
    protocol = "grpc" if isinstance(receiver, GrpcReceiver) else "http/protobuf"
    runners: list[Any] = []

    def make(*, retry_for_s: float = 5.0, start: int | None = None, track: bool = True,
             **settings: Any) -> Any:
        options = OtlpSettings.load({}, endpoint=receiver.endpoint, protocol=protocol,  # type: ignore[attr-defined]
                                    headers={"authorization": "Bearer test"}, **settings)
        transport = otlp_transport(options, retry_for_s=retry_for_s)
        transport.retry = type(transport.retry)(retry_for_s, 0.01, 0.05)  # fast backoff for tests
        runners.append(otlp_runner(tracker.store, open_positions(url), options, transport,
                                   start=start, track=track))
        return runners[-1]

    yield make
    for runner in runners:
        runner.transport.close()


def test_every_span_arrives_with_its_structure(recorded: tuple[str, Any, Scenario],
                                               receiver: Receiver, make_runner: Callable[..., Any]) -> None:
    url, tracker, scenario = recorded
    runner = make_runner()
    runner.export_to_head()
    spans = receiver.spans()
    assert len(spans) == SCENARIO_SPANS and runner.position == tracker.store.max_position()
    runs = {s.trace_id: s for s in spans if s.name == "train run"}
    assert set(runs) == {scenario.failed_run.bytes, scenario.resumed_run.bytes}
    assert all(s.parent_span_id == runs[s.trace_id].span_id for s in spans if s.name != "train run")
    (resumed,) = [s for s in spans if s.name == "finish run" and s.trace_id == scenario.resumed_run.bytes]
    assert resumed.links[0].span_id == runs[scenario.failed_run.bytes].span_id
    assert receiver.headers[0]["authorization"] == "Bearer test"
    assert open_positions(url).get("otlp") == runner.position


def test_a_re_export_sends_byte_identical_requests(receiver: Receiver,
                                                   make_runner: Callable[..., Any]) -> None:
    for _ in range(2):
        make_runner(start=0, batch_spans=5).export_to_head()
    half = len(receiver.raw) // 2
    assert half == 3 and receiver.raw[:half] == receiver.raw[half:]  # 11 spans, 5 a request


def test_a_collector_that_is_down_delays_export_and_loses_nothing(
        recorded: tuple[str, Any, Scenario], receiver: Receiver,
        make_runner: Callable[..., Any]) -> None:
    url, _, _ = recorded
    receiver.stop()  # type: ignore[attr-defined]
    runner = make_runner(retry_for_s=0.2, batch_spans=5)
    with pytest.raises(CollectorUnavailableError) as caught:
        runner.export_to_head()
    assert caught.value.attempts >= 2 and runner.position == 0 == open_positions(url).get("otlp")
    receiver.start()  # type: ignore[attr-defined]
    runner.transport.retry = type(runner.transport.retry)(10.0, 0.05, 0.25)  # gRPC reconnects
    runner.export_to_head()
    assert len(receiver.spans()) == SCENARIO_SPANS


def test_unavailable_answers_are_retried_until_accepted(receiver: Receiver,
                                                        make_runner: Callable[..., Any]) -> None:
    code = UNAVAILABLE[receiver.protocol]  # type: ignore[attr-defined]
    receiver.fail_next(code, code, code)
    make_runner().export_to_head()
    assert receiver.attempts == 4 and len(receiver.spans()) == SCENARIO_SPANS


def test_a_slow_collector_times_out_and_the_retry_delivers(receiver: Receiver,
                                                           make_runner: Callable[..., Any]) -> None:
    receiver.delay_next(1.5)
    make_runner(timeout_s=0.3).export_to_head()
    spans = receiver.wait_for_spans(SCENARIO_SPANS)
    by_id: dict[bytes, bytes] = {}
    for span in spans:  # the slow request may land too: duplicates must be identical
        assert by_id.setdefault(span.span_id, span.SerializeToString()) == span.SerializeToString()
    assert len(by_id) == SCENARIO_SPANS and receiver.attempts >= 2


def test_a_refused_request_is_an_error_and_the_position_stays(
        receiver: Receiver, make_runner: Callable[..., Any]) -> None:
    receiver.fail_next(REFUSED[receiver.protocol])  # type: ignore[attr-defined]
    runner = make_runner(batch_spans=5)
    with pytest.raises(ExportRejectedError):
        runner.export_to_head()
    assert runner.position == 0 and receiver.attempts == 1
    runner.export_to_head()
    assert len(receiver.spans()) == SCENARIO_SPANS


def test_requests_stay_within_the_span_and_byte_limits(receiver: Receiver,
                                                       make_runner: Callable[..., Any]) -> None:
    make_runner(batch_spans=3, batch_bytes=65_536).export_to_head()
    sizes = [len(r.resource_spans[0].scope_spans[0].spans) for r in receiver.requests()]
    assert sizes == [3, 3, 3, 2] and all(len(raw) <= 65_536 for raw in receiver.raw)


def test_the_next_request_is_built_while_the_previous_is_on_the_wire(
        receiver: Receiver, make_runner: Callable[..., Any]) -> None:
    """One request in flight at a time, each confirmed before the next goes, and the next one
    encoded meanwhile (``OtlpExportRunner.send_all``)."""
    runner = make_runner(batch_spans=5)
    log: list[str] = []
    export, encode = runner.transport.export, runner.encoder.encode_span

    def exporting(payload: bytes, cancel: Any = None) -> Any:
        log.append("send")
        try:
            return export(payload, cancel)
        finally:
            log.append("sent")

    def encoding(record: Any, max_size: int | None = None) -> bytes:
        log.append("encode")
        return encode(record, max_size)  # type: ignore[no-any-return]

    runner.transport.export, runner.encoder.encode_span = exporting, encoding
    receiver.delay_next(0.5)  # type: ignore[attr-defined]
    runner.export_to_head()
    sends = [i for i, entry in enumerate(log) if entry == "send"]
    sents = [i for i, entry in enumerate(log) if entry == "sent"]
    assert len(sends) == len(sents) == 3 and len(receiver.spans()) == SCENARIO_SPANS
    assert all(sent < send for sent, send in zip(sents, sends[1:], strict=False))
    assert "encode" in log[sends[0]:sents[0]]  # the second request, built during the first
