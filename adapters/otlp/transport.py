"""Transports: deliver one encoded ``ExportTraceServiceRequest``, with timeouts and retries.

    OtlpTransport (protocol)       export(payload, cancel) -> ExportResult; close()
    ├── OtlpHttpTransport          OTLP/HTTP protobuf through an injected httpx.Client
    ├── OtlpGrpcTransport          OTLP/gRPC through grpcio (TraceService/Export)
    └── OtlpJsonWriter             no network: OTLP/JSON lines to a stream (the dry run)

Each network transport owns its timeout (per attempt), headers, TLS (a CA file to trust, a
client key and certificate for mutual TLS), compression (gzip: ``Content-Encoding: gzip`` over
HTTP, the gzip message encoding over gRPC), the specification's User-Agent
(``OTel-OTLP-Exporter-Python/<version>``, after ``lineage/<version>``), and retries: a retryable
failure (connection refused or reset, a timeout, HTTP 429/502/503/504, gRPC UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and the other codes the OTLP specification lists) is
retried with exponential backoff and jitter, honouring ``Retry-After``, until the retry budget
runs out; then ``CollectorUnavailableError``. Anything else the collector answers is final:
``ExportRejectedError``, at once, with what to check: HTTP 400 (the collector cannot read the
request), 401/403 (credentials: the headers), 404 (the path), a TLS failure (the certificate
does not verify, or the server wants a client certificate). ``export`` blocks the calling
thread (the runner's) for at most about ``retry_for_s`` plus one timeout; setting ``cancel``
ends the backoff early.

The same payload bytes are sent on every attempt, so a retried request is byte-identical.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import ssl
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
from lineage.version import __version__

from .encoder import request_json

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
USER_AGENT = f"lineage/{__version__} OTel-OTLP-Exporter-Python/{__version__}"
GZIP, NO_COMPRESSION = "gzip", "none"
_HINTS = {400: "the collector could not read the request",
          401: "the collector wants credentials: check OTEL_EXPORTER_OTLP_HEADERS",
          403: "the collector refused the credentials: check OTEL_EXPORTER_OTLP_HEADERS",
          404: "no OTLP receiver at this path: check OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
          413: "the request is too large for the collector: lower LINEAGE_OTLP_BATCH_BYTES"}
_TLS_HINT = ("TLS failed ({}): check OTEL_EXPORTER_OTLP_CERTIFICATE (the CA to trust) and, for "
             "mutual TLS, OTEL_EXPORTER_OTLP_CLIENT_KEY / _CLIENT_CERTIFICATE")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS: ``certificate`` the CA bundle to trust (None: the system's),
    ``client_key`` and ``client_certificate`` for mutual TLS (both or neither)."""

    certificate: str | None = None
    client_key: str | None = None
    client_certificate: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.certificate)
        if self.client_certificate and self.client_key:
            context.load_cert_chain(self.client_certificate, self.client_key)
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as file:
                return file.read()
        return grpc.ssl_channel_credentials(read(self.certificate), read(self.client_key),
                                            read(self.client_certificate))


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a transport error, if that is what it is (not worth retrying)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and isinstance(
            seen.args[0], BaseException) else None)
    return None
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


class _RetriedTransport:
    """What both transports share: ``export`` prepares the payload once (``_prepare``) and
    retries one ``_attempt`` within the retry window (``with_retries``), so every try sends the
    same bytes."""

    def __init__(self, endpoint: str, retry: RetryWindow) -> None:
        self.endpoint = endpoint
        self.retry = retry

    def export(self, payload: bytes, cancel: threading.Event | None = None) -> ExportResult:
        body = self._prepare(payload)
        return with_retries(lambda: self._attempt(body), self.endpoint, self.retry, cancel)

    def _prepare(self, payload: bytes) -> bytes:
        return payload

    def _attempt(self, body: bytes) -> ExportResult:
        raise NotImplementedError


class OtlpHttpTransport(_RetriedTransport):
    """OTLP/HTTP with protobuf bodies: ``POST endpoint`` (the full ``.../v1/traces`` URL).

    ``client`` is injected (tests pass one with an ``httpx.MockTransport`` or point it at a
    loopback server); without one a client is made and closed by ``close()``.
    """

    def __init__(self, endpoint: str, *, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0, retry: RetryWindow = RetryWindow(),
                 client: httpx.Client | None = None, compression: str = NO_COMPRESSION,
                 tls: TlsFiles = TlsFiles()) -> None:
        super().__init__(endpoint, retry)
        self.timeout = httpx.Timeout(timeout_s)
        self.compression = compression
        self.headers = {"user-agent": USER_AGENT, **(headers or {}),
                        "content-type": "application/x-protobuf"}
        if compression == GZIP:
            self.headers["content-encoding"] = GZIP
        self._owns_client = client is None
        self.client = client if client is not None else httpx.Client(verify=tls.ssl_context())

    def _prepare(self, payload: bytes) -> bytes:
        return gzip.compress(payload, mtime=0) if self.compression == GZIP else payload

    def _attempt(self, body: bytes) -> ExportResult:
        try:
            response = self.client.post(self.endpoint, content=body, headers=self.headers,
                                        timeout=self.timeout)
        except httpx.TransportError as error:  # connect/read errors and timeouts
            tls = _tls_failure(error)
            if tls is not None:
                raise ExportRejectedError(self.endpoint, _TLS_HINT.format(
                    getattr(tls, "verify_message", None) or tls.reason or tls)) from None
            raise Retryable(f"{type(error).__name__}: {error}") from None
        if 200 <= response.status_code < 300:
            return _response(response.content)
        reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code in RETRYABLE_HTTP:
            raise Retryable(reason, _retry_after(response.headers.get("retry-after")))
        detail = response.text[:300].strip()
        hint = _HINTS.get(response.status_code)
        raise ExportRejectedError(self.endpoint, f"{reason}{' (' + hint + ')' if hint else ''}"
                                                 f"{': ' + detail if detail else ''}")

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class OtlpGrpcTransport(_RetriedTransport):
    """OTLP/gRPC: the ``TraceService/Export`` RPC that ``TraceServiceStub.Export`` calls, with
    the request passed through already encoded (so a retry sends the same bytes).

    ``endpoint`` is ``http://host:port`` (plaintext) or ``https://host:port`` (TLS with the
    system roots); ``channel`` may be injected, and is then not closed by ``close()``.
    """

    def __init__(self, endpoint: str, *, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0, retry: RetryWindow = RetryWindow(),
                 channel: grpc.Channel | None = None, compression: str = NO_COMPRESSION,
                 tls: TlsFiles = TlsFiles()) -> None:
        super().__init__(endpoint, retry)
        self.timeout_s = timeout_s
        self.compression = grpc.Compression.Gzip if compression == GZIP else None
        self.metadata = tuple((key.lower(), value) for key, value in (headers or {}).items())
        self._owns_channel = channel is None
        self.channel = channel if channel is not None else _channel(endpoint, tls)
        self._call = self.channel.unary_unary(
            EXPORT_METHOD, request_serializer=bytes,
            response_deserializer=ExportTraceServiceResponse.FromString)

    def _attempt(self, payload: bytes) -> ExportResult:
        try:
            response = self._call(payload, timeout=self.timeout_s, metadata=self.metadata,
                                  compression=self.compression)
        except grpc.RpcError as error:
            code: Any = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = error.details() if hasattr(error, "details") else str(error)
            reason = f"gRPC {getattr(code, 'name', code)}: {details}"
            if code == grpc.StatusCode.UNAVAILABLE and _GRPC_TLS.search(str(details)):
                raise ExportRejectedError(self.endpoint, _TLS_HINT.format(details)) from None
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
                   ("grpc.max_reconnect_backoff_ms", 5000), ("grpc.primary_user_agent", USER_AGENT))
# How gRPC words a failed TLS handshake in an UNAVAILABLE status (no status code of its own).
_GRPC_TLS = re.compile(r"ssl|tls|handshake|certificate", re.IGNORECASE)


def _channel(endpoint: str, tls: TlsFiles) -> grpc.Channel:
    parts = urlsplit(endpoint)
    target = f"{parts.hostname}:{parts.port or 4317}"
    if ":" in (parts.hostname or ""):
        target = f"[{parts.hostname}]:{parts.port or 4317}"
    if parts.scheme == "https":
        return grpc.secure_channel(target, tls.grpc_credentials(), CHANNEL_OPTIONS)
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
