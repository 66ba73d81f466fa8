"""OTLP/HTTP transport retries and errors, through httpx.MockTransport (no patching)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from lineage.adapters.otlp.transport import OtlpHttpTransport, RetryWindow
from lineage.errors import CollectorUnavailableError, ExportRejectedError

URL = "http://collector.test:4318/v1/traces"
FAST = RetryWindow(retry_for_s=5.0, initial_s=0.001, max_s=0.002)


def transport(answers: list[httpx.Response | Exception], seen: list[httpx.Request],
              retry: RetryWindow = FAST, **kwargs: object) -> OtlpHttpTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return OtlpHttpTransport(URL, client=client, retry=retry, **kwargs)  # type: ignore[arg-type]


def ok(body: bytes = b"") -> httpx.Response:
    return httpx.Response(200, content=body)


@pytest.mark.parametrize("failure", [
    httpx.Response(503), httpx.Response(429, headers={"retry-after": "0"}), httpx.Response(502),
    httpx.Response(504), httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_retryable_failures_are_retried_with_the_same_bytes(failure: httpx.Response | Exception) -> None:
    seen: list[httpx.Request] = []
    result = transport([failure, failure, ok()], seen).export(b"payload")
    assert result.attempts == 3 and [r.content for r in seen] == [b"payload"] * 3


def test_headers_content_type_and_the_endpoint_are_sent() -> None:
    seen: list[httpx.Request] = []
    transport([ok()], seen, headers={"authorization": "Bearer t"}).export(b"x")
    assert str(seen[0].url) == URL and seen[0].method == "POST"
    assert seen[0].headers["content-type"] == "application/x-protobuf"
    assert seen[0].headers["authorization"] == "Bearer t"


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_other_answers_are_final_and_not_retried(status: int) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(ExportRejectedError, match=f"HTTP {status}") as caught:
        transport([httpx.Response(status, text="no such thing")], seen).export(b"x")
    assert len(seen) == 1 and caught.value.endpoint == URL and "no such thing" in str(caught.value)


def test_an_exhausted_retry_budget_reports_the_collector_unavailable() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(CollectorUnavailableError, match="HTTP 503") as caught:
        transport([httpx.Response(503)], seen, retry=RetryWindow(0.05, 0.01, 0.01)).export(b"x")
    assert caught.value.attempts == len(seen) >= 2


def test_cancel_ends_the_backoff() -> None:
    cancel = threading.Event()
    cancel.set()
    seen: list[httpx.Request] = []
    with pytest.raises(CollectorUnavailableError, match="cancelled"):
        transport([httpx.Response(503)], seen, retry=RetryWindow(60, 10, 10)).export(b"x", cancel)
    assert len(seen) == 1


def test_partial_success_is_reported_not_retried() -> None:
    body = ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
        rejected_spans=2, error_message="too old")).SerializeToString()
    seen: list[httpx.Request] = []
    result = transport([ok(body)], seen).export(b"x")
    assert (result.rejected_spans, result.message, len(seen)) == (2, "too old", 1)


def test_an_injected_client_is_not_closed_by_the_transport() -> None:
    seen: list[httpx.Request] = []
    sender: Callable[[], OtlpHttpTransport] = lambda: transport([ok()], seen)  # noqa: E731
    first = sender()
    first.close()
    assert not first.client.is_closed
