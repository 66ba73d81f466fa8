"""OTLP export throughput from the store: ``OtlpExportRunner`` against the OpenTelemetry SDK's
BatchSpanProcessor + OTLP/HTTP exporter, to the same loopback receiver, in the same run.

The receiver runs in its own process (a ``ThreadingHTTPServer`` on 127.0.0.1 that decodes every
``ExportTraceServiceRequest`` with opentelemetry-proto and counts its spans), so both pipelines
pay for the same HTTP round trips and neither shares its GIL with the receiver. Figures:

- **ours, default grouping**: the whole exporter over a stored run of ``--steps`` steps (SQLite):
  read the notification log, decode the step blocks, build the spans (the trace identity's
  bounded grouping: 100 groups of 100 steps, then of 1,000, ...; ``step`` events and metric
  summaries on each), encode, send, write the tracked position. steps/s = steps / time.
- **ours, one span per step**: the same run exported with ``StepGrouping(1)``
  (``--steps-per-span 1``): spans/s = spans received / time.
- **SDK**: a tracer makes ``--sdk-spans`` spans (same name, six attributes, explicit
  historical times) under one parent; ``BatchSpanProcessor`` (queue sized to hold them all, so
  none is dropped; batch ``--batch``) with ``OTLPSpanExporter``; spans/s = spans received /
  time from the first ``start_span`` to ``force_flush`` returning. It makes spans from values
  in memory: it reads no store, so the comparison favours it.

Both pipelines send ``--batch`` spans a request. Needs the ``bench`` extra
(``pip install -e '.[bench]'``).

Targets: a stored 1,000,000-step run exports at >= 100,000 steps/s with the default grouping,
and at one span per step >= 3x the SDK pipeline's spans/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common import Report, sqlite_store

STEPS_TARGET, RATIO_TARGET = 100_000, 3.0


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
    tracker.flush()
    return tracker


def ours_from_store(tracker: Any, receiver: Receiver, batch: int,
                    steps_per_span: int) -> tuple[float, dict[str, Any]]:
    """(seconds, runner stats and ``cpu_s``, this process's CPU seconds: all its threads) of
    the whole exporter from position 0."""
    from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
    from lineage.config.otlp import OtlpSettings

    settings = OtlpSettings.load({}, endpoint=receiver.endpoint, batch_spans=batch,
                                 steps_per_span=steps_per_span)
    runner = otlp_runner(tracker.store, open_positions(tracker.store.location), settings,
                         otlp_transport(settings), name=f"bench-{steps_per_span}", start=0)
    before = receiver.received()
    began, cpu = time.perf_counter(), time.process_time()
    runner.export_to_head()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    runner.transport.close()
    receiver.wait_for(before + runner.stats.spans)
    stats = runner.stats
    return elapsed, {"spans": receiver.received() - before, "requests": stats.requests,
                     "bytes": stats.bytes, "cpu_s": cpu}


def sdk_pipeline(count: int, receiver: Receiver, batch: int) -> tuple[float, int, float]:
    """(spans/s, spans dropped, CPU seconds of this process: the processor's thread too)."""
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
    began, cpu = time.perf_counter(), time.process_time()
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
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    receiver.wait_for(before + count + 1)
    provider.shutdown()
    received = receiver.received() - before
    return received / elapsed, count + 1 - received, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps of the stored run")
    parser.add_argument("--sdk-spans", type=int, default=100_000,
                        help="spans the SDK pipeline makes (its rate is what is compared)")
    parser.add_argument("--batch", type=int, default=512, help="spans per request (both)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = Report.start("OTLP export from the store to a loopback receiver, beside the SDK")
    receiver = Receiver()
    try:
        with sqlite_store() as path:
            began = time.perf_counter()
            tracker = record_steps(path, args.steps)
            report.figure("record the run", args.steps / (time.perf_counter() - began),
                          "steps/s", fmt="{:,.0f}", note=f"{args.steps:,} steps (setup)")
            report.section("ours, default grouping (the trace identity's)")
            elapsed, stats = ours_from_store(tracker, receiver, args.batch, 0)
            report.figure("from the store", args.steps / elapsed, "steps/s", fmt="{:,.0f}",
                          target=(">=", STEPS_TARGET),
                          note=f"{stats['spans']:,} spans in {stats['requests']:,} request(s), "
                               f"{stats['bytes']:,} bytes, {elapsed:.2f} s")
            report.section("ours, one span per step")
            elapsed, stats = ours_from_store(tracker, receiver, args.batch, 1)
            ours, ours_cpu = stats["spans"] / elapsed, stats["cpu_s"] / stats["spans"]
            report.figure("from the store", ours, "spans/s", fmt="{:,.0f}",
                          note=f"{stats['spans']:,} spans in {stats['requests']:,} request(s), "
                               f"{elapsed:.2f} s")
            report.figure("CPU per span", ours_cpu * 1e6, "us", fmt="{:.1f}",
                          note="this process, all threads (the receiver's not counted)")
            tracker.close()
        report.section("OpenTelemetry SDK (BatchSpanProcessor + OTLP/HTTP exporter)")
        sdk, dropped, sdk_cpu = sdk_pipeline(args.sdk_spans, receiver, args.batch)
        sdk_cpu /= args.sdk_spans + 1
        report.figure("create + batch + export", sdk, "spans/s", fmt="{:,.0f}",
                      note=f"{args.sdk_spans:,} spans, {dropped} dropped")
        report.figure("CPU per span", sdk_cpu * 1e6, "us", fmt="{:.1f}",
                      note="this process, all threads (the receiver's not counted)")
        report.section("ratio at one span per step")
        report.figure("ours / SDK", ours / sdk, "x", fmt="{:.2f}", target=(">=", RATIO_TARGET))
        report.figure("ours / SDK, by CPU per span", sdk_cpu / ours_cpu, "x", fmt="{:.2f}",
                      note="steadier under load than the wall-clock ratio (not the target)")
    finally:
        receiver.stop()
    report.finish(args.json)


if __name__ == "__main__":
    main()
