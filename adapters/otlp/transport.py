"""Transports: deliver one encoded ``ExportTraceServiceRequest``, with timeouts and retries.

    OtlpTransport (protocol)       export(payload, cancel) -> ExportResult; close()
    ├── OtlpHttpTransport          OTLP/HTTP protobuf through an injected httpx.Client
    ├── OtlpGrpcTransport          OTLP/gRPC through grpcio (TraceService/Export)
    └── OtlpJsonWriter             no network: OTLP/JSON lines to a stream (the dry run)

Each network transport owns its timeout (per attempt), headers, and retries: a retryable
failure (connection refused or reset, a timeout, HTTP 429/502/503/504, gRPC UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and the other codes the OTLP specification lists) is
retried with exponential backoff and jitter, honouring ``Retry-After``, until the retry budget
runs out; then ``CollectorUnavailableError``. Anything else the collector answers is final:
``ExportRejectedError``. ``export`` blocks the calling thread (the runner's) for at most about
``retry_for_s`` plus one timeout; setting ``cancel`` ends the backoff early.

The same payload bytes are sent on every attempt, so a retried request is byte-identical.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from lineage.errors import CollectorUnavailableError, ExportRejectedError

from .encoder import request_json

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
RETRYABLE_GRPC = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class ExportResult:
    """A request the collector accepted; ``rejected_spans`` it reported as partial success
    (those will never be accepted, so they are not retried)."""

    rejected_spans: int = 0
    message: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class RetryWindow:
    """How long a transport keeps retrying one export: exponential backoff, ``initial_s``
    doubling up to ``max_s``, with up to 20 % jitter, for at most ``retry_for_s`` in total
    (0: a single attempt). Not ``lineage.RetryPolicy``, which governs run recovery."""

    retry_for_s: float = 60.0
    initial_s: float = 0.25
    max_s: float = 5.0


class OtlpTransport(Protocol):
    endpoint: str

    def export(self, payload: bytes, cancel: threading.Event | None = None) -> ExportResult:
        """Deliver ``payload``; raise CollectorUnavailableError / ExportRejectedError."""

    def close(self) -> None: ...


class Retryable(Exception):
    """One attempt failed in a way worth retrying; ``retry_after`` is the server's hint (s)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


def with_retries(attempt: Callable[[], ExportResult], endpoint: str, window: RetryWindow,
                 cancel: threading.Event | None) -> ExportResult:
    """Run ``attempt`` until it returns, retrying ``Retryable`` with backoff (see module doc)."""
    deadline = time.monotonic() + window.retry_for_s
    delay, attempts = window.initial_s, 0
    while True:
        attempts += 1
        try:
            result = attempt()
            return ExportResult(result.rejected_spans, result.message, attempts)
        except Retryable as failure:
            wait = failure.retry_after if failure.retry_after is not None else delay
            wait = min(wait, window.max_s * 6) * (1 + random.uniform(0, 0.2))
            if time.monotonic() + wait > deadline:
                raise CollectorUnavailableError(endpoint, failure.reason, attempts) from None
            if cancel is not None and cancel.wait(wait):
                raise CollectorUnavailableError(endpoint, f"{failure.reason} (cancelled)",
                                                attempts) from None
            if cancel is None:
                time.sleep(wait)
            delay = min(delay * 2, window.max_s)


def _response(body: bytes) -> ExportResult:
    """The partial-success part of an ``ExportTraceServiceResponse`` (empty body: none)."""
    if not body:
        return ExportResult()
    try:
        response = ExportTraceServiceResponse.FromString(body)
    except Exception:  # a proxy's HTML "OK" page: the request was still accepted
        return ExportResult()
    partial = response.partial_success
    return ExportResult(partial.rejected_spans, partial.error_message)


class OtlpHttpTransport:
    """OTLP/HTTP with protobuf bodies: ``POST endpoint`` (the full ``.../v1/traces`` URL).

    ``client`` is injected (tests pass one with an ``httpx.MockTransport`` or point it at a
    loopback server); without one a client is made and closed by ``close()``.
    """

    def __init__(self, endpoint: str, *, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0, retry: RetryWindow = RetryWindow(),
                 client: httpx.Client | None = None) -> None:
        self.endpoint = endpoint
        self.retry = retry
        self.timeout = httpx.Timeout(timeout_s)
        self.headers = {**(headers or {}), "content-type": "application/x-protobuf"}
        self._owns_client = client is None
        self.client = client if client is not None else httpx.Client()

    def export(self, payload: bytes, cancel: threading.Event | None = None) -> ExportResult:
        return with_retries(lambda: self._attempt(payload), self.endpoint, self.retry, cancel)

    def _attempt(self, payload: bytes) -> ExportResult:
        try:
            response = self.client.post(self.endpoint, content=payload, headers=self.headers,
                                        timeout=self.timeout)
        except httpx.TransportError as error:  # connect/read errors and timeouts
            raise Retryable(f"{type(error).__name__}: {error}") from None
        if 200 <= response.status_code < 300:
            return _response(response.content)
        reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code in RETRYABLE_HTTP:
            raise Retryable(reason, _retry_after(response.headers.get("retry-after")))
        detail = response.text[:300].strip()
        raise ExportRejectedError(self.endpoint, f"{reason}{': ' + detail if detail else ''}")

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class OtlpGrpcTransport:
    """OTLP/gRPC: the ``TraceService/Export`` RPC that ``TraceServiceStub.Export`` calls, with
    the request passed through already encoded (so a retry sends the same bytes).

    ``endpoint`` is ``http://host:port`` (plaintext) or ``https://host:port`` (TLS with the
    system roots); ``channel`` may be injected, and is then not closed by ``close()``.
    """

    def __init__(self, endpoint: str, *, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0, retry: RetryWindow = RetryWindow(),
                 channel: grpc.Channel | None = None) -> None:
        self.endpoint = endpoint
        self.retry = retry
        self.timeout_s = timeout_s
        self.metadata = tuple((key.lower(), value) for key, value in (headers or {}).items())
        self._owns_channel = channel is None
        self.channel = channel if channel is not None else _channel(endpoint)
        self._call = self.channel.unary_unary(
            EXPORT_METHOD, request_serializer=bytes,
            response_deserializer=ExportTraceServiceResponse.FromString)

    def export(self, payload: bytes, cancel: threading.Event | None = None) -> ExportResult:
        return with_retries(lambda: self._attempt(payload), self.endpoint, self.retry, cancel)

    def _attempt(self, payload: bytes) -> ExportResult:
        try:
            response = self._call(payload, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.RpcError as error:
            code: Any = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = error.details() if hasattr(error, "details") else str(error)
            reason = f"gRPC {getattr(code, 'name', code)}: {details}"
            if code in RETRYABLE_GRPC:
                raise Retryable(reason) from None
            raise ExportRejectedError(self.endpoint, reason) from None
        partial = response.partial_success
        return ExportResult(partial.rejected_spans, partial.error_message)

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()


# gRPC's own reconnect backoff (1 s growing to 120 s by default) would keep failing calls fast
# long after the collector is back; keep it within our retry policy's range.
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
                   ("grpc.max_reconnect_backoff_ms", 5000))


def _channel(endpoint: str) -> grpc.Channel:
    parts = urlsplit(endpoint)
    target = f"{parts.hostname}:{parts.port or 4317}"
    if ":" in (parts.hostname or ""):
        target = f"[{parts.hostname}]:{parts.port or 4317}"
    if parts.scheme == "https":
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(), CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, CHANNEL_OPTIONS)


class OtlpJsonWriter:
    """Writes each request as one line of OTLP/JSON to ``stream`` instead of sending it."""

    endpoint = "stdout (dry run)"

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def export(self, payload: bytes, cancel: threading.Event | None = None) -> ExportResult:
        self.stream.write(json.dumps(request_json(payload), separators=(",", ":")) + "\n")
        return ExportResult()

    def close(self) -> None:
        self.stream.flush()
