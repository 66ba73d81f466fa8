"""Real OTLP receivers on loopback for the tests: OTLP/HTTP and OTLP/gRPC.

Both decode every ``ExportTraceServiceRequest`` with ``opentelemetry-proto`` and keep the raw
bytes, so tests can check structure and byte identity. Behaviour is scripted: ``fail_next``
queues status codes (HTTP) or status codes (gRPC) for the next requests, ``delay_next`` makes
the next requests slow, and ``stop()`` / ``start()`` take the server down and bring it back on
the same port (a collector outage).
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
from collections import deque
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """What both receivers share: the recorded requests and the scripted behaviour."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.raw: list[bytes] = []  # accepted requests, in arrival order
        self.attempts = 0  # every request that arrived, accepted or not
        self.headers: list[dict[str, str]] = []
        self._failures: deque[Any] = deque()
        self._delays: deque[float] = deque()
        self._stall_from: int | None = None
        self._release = threading.Event()

    def fail_next(self, *codes: Any) -> None:
        with self.lock:
            self._failures.extend(codes)

    def delay_next(self, *seconds: float) -> None:
        with self.lock:
            self._delays.extend(seconds)

    def stall_from(self, accepted: int) -> None:
        """Requests after the first ``accepted`` are recorded, then get no answer until
        ``release()`` (an exporter can be killed while it waits)."""
        self._stall_from = accepted

    def release(self) -> None:
        self._release.set()

    def _script(self) -> tuple[Any, float]:
        with self.lock:
            self.attempts += 1
            failure = self._failures.popleft() if self._failures else None
            delay = self._delays.popleft() if self._delays else 0.0
        return failure, delay

    def _accept(self, body: bytes, headers: dict[str, str]) -> None:
        ExportTraceServiceRequest.FromString(body)  # a request that does not decode is a bug
        with self.lock:
            self.raw.append(body)
            self.headers.append(headers)
            stall = self._stall_from is not None and len(self.raw) > self._stall_from
        if stall:
            self._release.wait(30)

    def requests(self) -> list[ExportTraceServiceRequest]:
        with self.lock:
            return [ExportTraceServiceRequest.FromString(body) for body in self.raw]

    def spans(self) -> list[Span]:
        return [span for request in self.requests() for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def span_bytes(self) -> list[bytes]:
        return [span.SerializeToString(deterministic=True) for span in self.spans()]

    def wait_for_spans(self, count: int, timeout: float = 20.0) -> list[Span]:
        """Block until at least ``count`` spans arrived (a bound, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if len(spans) >= count:
                return spans
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.spans())} of {count} spans arrived")


class HttpReceiver(Receiver):
    """OTLP/HTTP on ``http://127.0.0.1:PORT/v1/traces``; failures are HTTP status codes.
    With ``tls`` (a server-side SSLContext) it speaks HTTPS; gzip bodies are decoded."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.tls = tls
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base}/v1/traces"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                failure, delay = receiver._script()
                time.sleep(delay)
                if self.path != "/v1/traces":
                    return self._reply(404, b"not found")
                if failure is not None:
                    return self._reply(failure, b"try later", {"retry-after": "0"})
                receiver._accept(body, {k.lower(): v for k, v in self.headers.items()})
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

            def _reply(self, code: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/x-protobuf")
                    self.send_header("content-length", str(len(body)))
                    for key, value in (extra or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to tell it

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class GrpcReceiver(Receiver):
    """OTLP/gRPC on ``127.0.0.1:PORT``; failures are ``grpc.StatusCode`` values. With
    ``credentials`` (``grpc.ssl_server_credentials``) it speaks TLS."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.credentials else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> GrpcReceiver:
        def export(body: bytes, context: grpc.ServicerContext) -> bytes:
            failure, delay = self._script()
            time.sleep(delay)
            if failure is not None:
                context.abort(failure, "scripted failure")
            self._accept(body, {k: v for k, v in context.invocation_metadata()})
            return ExportTraceServiceResponse().SerializeToString()

        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(export)})  # raw bytes in and out
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((handler,))
        if self.credentials is not None:
            server.add_secure_port(f"127.0.0.1:{self.port}", self.credentials)
        else:
            server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None


class WireGrpcReceiver(Receiver):
    """OTLP/gRPC read off the wire: plaintext HTTP/2 (h2, the protocol state machine only) and
    the gRPC message framing by hand, so a test sees what the client really sent, which a
    ``grpc.server`` hides (it decompresses before the handler). For each request it keeps the
    headers (``grpc-encoding``) and, in ``compressed``, the compressed flag of each
    length-prefixed message; a message flagged compressed is gunzipped (``grpc-encoding``
    must then be ``gzip``) before it is accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.compressed: list[bool] = []
        self.wire: list[int] = []  # each message's length as sent
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WireGrpcReceiver:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        sock.sendall(h2c.data_to_send())
        headers: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytearray] = {}
        with sock:
            while data := sock.recv(65536):
                for event in h2c.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = {
                            (k.decode() if isinstance(k, bytes) else k):
                            (v.decode() if isinstance(v, bytes) else v) for k, v in event.headers}
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        h2c.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(h2c, event.stream_id, headers.pop(event.stream_id),
                                     bytes(bodies.pop(event.stream_id)))
                sock.sendall(h2c.data_to_send())

    def _answer(self, h2c: Any, stream: int, headers: dict[str, str], body: bytes) -> None:
        self._script()
        flag, length = body[0], int.from_bytes(body[1:5], "big")
        message = body[5:5 + length]
        with self.lock:
            self.compressed.append(flag == 1)
            self.wire.append(length)
        if flag == 1:
            if headers.get("grpc-encoding") != "gzip":
                raise AssertionError(f"a compressed message with grpc-encoding {headers}")
            message = gzip.decompress(message)
        self._accept(message, headers)
        reply = ExportTraceServiceResponse().SerializeToString()
        h2c.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        h2c.send_data(stream, b"\0" + len(reply).to_bytes(4, "big") + reply)
        h2c.send_headers(stream, [("grpc-status", "0")], end_stream=True)
