"""OTLP export throughput: our encoder + OTLP/HTTP transport against the OpenTelemetry SDK's
BatchSpanProcessor + OTLP/HTTP exporter, to the same loopback receiver, in the same run.

The receiver runs in its own process (a ``ThreadingHTTPServer`` on 127.0.0.1 that decodes every
``ExportTraceServiceRequest`` with opentelemetry-proto and counts its spans), so both pipelines
pay for the same HTTP round trips and neither shares its GIL with the receiver. Figures:

- **ours, encode + export**: ``--spans`` ``train steps`` span records (the step-group spans
  ``SpanBuilder`` builds from a SQLite store of ``--spans`` step events, one per
  ``identity.STEPS_PER_SPAN`` steps, repeated with distinct span ids up to ``--spans``),
  encoded by ``OtlpEncoder`` and sent in requests of ``--batch`` spans by
  ``OtlpHttpTransport``; spans/s = spans received / time from the first encode to the last
  response.
- **ours, from the store**: the whole exporter (``OtlpExportRunner``) over those ``--spans``
  step events: read the notification log, decode, build spans, encode, send, write the tracked
  position; steps/s = step events exported / time (steps are stored ~1,000 to a block, so
  notifications/s says little), and the spans/s it makes.
- **SDK**: a tracer makes the same number of spans (same name, six attributes, explicit
  historical times) under one parent; ``BatchSpanProcessor`` (queue sized to hold them all, so
  none is dropped; batch ``--batch``) with ``OTLPSpanExporter``; spans/s = spans received / time
  from the first ``start_span`` to ``force_flush`` returning.

Needs the ``bench`` extra (``pip install -e '.[bench]'``).

Target: ours (encode + export) >= 20,000 spans/s; the ratio to the SDK is printed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common import Report, sqlite_store

TARGET = 20_000


def _serve(port: int, counter: Any, ready: Any) -> None:
    """The receiver process: decode each request, count its spans, answer 200."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as both clients use

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            request = ExportTraceServiceRequest.FromString(body)
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with counter.get_lock():
                counter.value += spans
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


class Receiver:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.counter = multiprocessing.Value("q", 0)
        ready = multiprocessing.Event()
        self.process = multiprocessing.Process(target=_serve, args=(self.port, self.counter, ready),
                                               daemon=True)
        self.process.start()
        ready.wait(30)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def received(self) -> int:
        return int(self.counter.value)

    def wait_for(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < count and time.monotonic() < deadline:
            time.sleep(0.001)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def record_steps(url: str, count: int) -> Any:
    """A tracker on ``url`` with one finished run of ``count`` logged steps."""
    import lineage

    tracker = lineage.Tracker(url, export_otlp=False)
    with tracker.start_run("bench-otlp") as run:
        for step in range(1, count + 1):
            run.log_step(step, {"loss": 1.0 / step, "lr": 1e-4}, epoch=0, tokens=64)
    return tracker


def build_records(tracker: Any, count: int) -> list[Any]:
    """``count`` step-group span records: those of the store, repeated with distinct ids."""
    from dataclasses import replace

    from lineage.spans.builder import STEPS_SPAN, SpanBuilder

    builder = SpanBuilder(tracker.store, tracker.mapper)
    built, start = [], 1
    while notes := tracker.store.read_log(start, 1000):
        built += [span for group in builder.build(notes) for span in group
                  if span.name == STEPS_SPAN]
        start = notes[-1].id + 1
    return [replace(built[n % len(built)], span_id=(n + 1).to_bytes(8, "big"))
            for n in range(count)]


def ours_encode_export(records: list[Any], receiver: Receiver, batch: int) -> float:
    from lineage.adapters.otlp.encoder import OtlpEncoder
    from lineage.adapters.otlp.transport import OtlpHttpTransport

    encoder = OtlpEncoder("bench")
    transport = OtlpHttpTransport(receiver.endpoint)
    before = receiver.received()
    began = time.perf_counter()
    for first in range(0, len(records), batch):
        transport.export(encoder.request([encoder.encode_span(r) for r in records[first:first + batch]]))
    elapsed = time.perf_counter() - began
    transport.close()
    receiver.wait_for(before + len(records))
    return (receiver.received() - before) / elapsed


def ours_from_store(tracker: Any, receiver: Receiver, batch: int,
                    steps: int) -> tuple[float, float, int]:
    """(step events/s, spans/s, spans) of the whole exporter from position 0."""
    from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
    from lineage.config.otlp import OtlpSettings

    settings = OtlpSettings.load({}, endpoint=receiver.endpoint, batch_spans=batch)
    runner = otlp_runner(tracker.store, open_positions(tracker.store.location), settings,
                         otlp_transport(settings), name="bench")
    before = receiver.received()
    began = time.perf_counter()
    runner.export_to_head()
    elapsed = time.perf_counter() - began
    runner.transport.close()
    receiver.wait_for(before + runner.stats.spans)
    return (steps / elapsed, (receiver.received() - before) / elapsed, runner.stats.spans)


def sdk_pipeline(count: int, receiver: Receiver, batch: int) -> tuple[float, int]:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint),
                                   max_queue_size=count + 1, max_export_batch_size=batch)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    before = receiver.received()
    base = time.time_ns()
    began = time.perf_counter()
    root = tracer.start_span("train run", start_time=base)
    context = trace.set_span_in_context(root)
    for step in range(1, count + 1):
        span = tracer.start_span("train step", context=context, start_time=base + step * 1000,
                                 attributes={"lineage.run.id": "r", "lineage.step": step,
                                             "lineage.epoch": 0, "lineage.tokens": 64,
                                             "lineage.metric.loss": 1.0 / step,
                                             "lineage.metric.lr": 1e-4})
        span.end(end_time=base + step * 1000 + 500)
    root.end()
    processor.force_flush(timeout_millis=600_000)
    elapsed = time.perf_counter() - began
    receiver.wait_for(before + count + 1)
    provider.shutdown()
    received = receiver.received() - before
    return received / elapsed, count + 1 - received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512, help="spans per request (both)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = Report.start("OTLP export: encode + export to a loopback receiver")
    receiver = Receiver()
    try:
        with sqlite_store() as path:
            tracker = record_steps(path, args.spans)
            records = build_records(tracker, args.spans)
            report.section("ours")
            ours = ours_encode_export(records, receiver, args.batch)
            report.figure("encode + export", ours, "spans/s", fmt="{:,.0f}", target=(">=", TARGET))
            events, rate, spans = ours_from_store(tracker, receiver, args.batch, args.spans)
            report.figure("from the store", events, "steps/s", fmt="{:,.0f}",
                          note="read+decode+build+encode+send")
            report.figure("from the store", rate, "spans/s", fmt="{:,.0f}",
                          note=f"{spans:,} spans incl. the run span")
            tracker.close()
        report.section("OpenTelemetry SDK (BatchSpanProcessor + OTLP/HTTP exporter)")
        sdk, dropped = sdk_pipeline(args.spans, receiver, args.batch)
        report.figure("create + batch + export", sdk, "spans/s", fmt="{:,.0f}",
                      note=f"{dropped} dropped")
        report.section("ratio")
        report.figure("ours / SDK", ours / sdk, "x", fmt="{:.2f}")
    finally:
        receiver.stop()
    report.finish(args.json)


if __name__ == "__main__":
    main()
