"""The OTLP exporter skips, and records, what it cannot turn into spans (issue 9).

Over the hostile events of ``test_quarantine`` (a step beyond 64 bits: the span model turns
ints OTLP cannot carry into strings; an artifact size beyond 64 bits; an unknown topic: no span;
a payload that does not decode: the builder fails on it), an export reaches the head instead of
failing on the same page for ever: the event that cannot be read is skipped and listed with its
reason, and everything else is delivered. A span the encoder fails on is skipped alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lineage.adapters.background_export import BackgroundExporter
from lineage.adapters.otlp.encoder import OtlpEncoder
from lineage.adapters.otlp.runner import OtlpExportRunner
from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
from lineage.config.otlp import OtlpSettings
from lineage.errors import ExportError
from lineage.spans.builder import SpanBuilder
from lineage.spans.model import SpanRecord
from tests.integration.test_quarantine import record_with_poison
from tests.otlp_receiver import HttpReceiver


def test_an_export_goes_past_events_it_cannot_encode(durable_url: str,
                                                     make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(durable_url)
    _, placed = record_with_poison(tracker)
    receiver = HttpReceiver().start()
    try:
        options = OtlpSettings.load({}, endpoint=receiver.endpoint, protocol="http/protobuf")
        runner = otlp_runner(tracker.store, open_positions(durable_url), options,
                             otlp_transport(options, retry_for_s=2.0))
        runner.export_to_head()
        assert runner.position == tracker.store.max_position()
        spans = receiver.spans()
        names = sorted(span.name for span in spans)
        assert names.count("train run") == 1 and names.count("save checkpoint") == 2
        assert names.count("train steps") == 1
        skipped = dict(runner.skipped)
        assert list(skipped) == [placed["garbage"]] and runner.stats.skipped == 1
        assert skipped[placed["garbage"]].startswith("MapperDeserialisationError")
        runner.export_to_head()  # nothing left, nothing skipped twice
        assert runner.stats.skipped == 1 and len(receiver.spans()) == len(spans)
        strict = BackgroundExporter(runner, strict=True)
        with pytest.raises(ExportError, match=f"position {placed['garbage']}"):
            strict.raise_if_strict()
        runner.transport.close()
    finally:
        receiver.stop()


class FailingEncoder(OtlpEncoder):
    """Cannot encode ``save checkpoint`` spans (as if they held what OTLP cannot carry)."""

    def encode_span(self, record: SpanRecord, max_size: int | None = None) -> bytes:
        if record.name == "save checkpoint":
            raise ValueError("Value out of range")
        return super().encode_span(record, max_size)


def test_a_span_the_encoder_fails_on_is_skipped_alone(sqlite_url: str,
                                                      make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(sqlite_url)
    run = tracker.start_run("r")
    run.log_step(1, {"loss": 1.0})
    saved = run.save_checkpoint("tinker://r/weights/step-1", step=1)
    run.finish("completed")
    tracker.flush()
    receiver = HttpReceiver().start()
    try:
        options = OtlpSettings.load({}, endpoint=receiver.endpoint, protocol="http/protobuf")
        runner = OtlpExportRunner(tracker.store, open_positions(sqlite_url),
                                  SpanBuilder(tracker.store, tracker.mapper), FailingEncoder(),
                                  otlp_transport(options, retry_for_s=2.0))
        runner.export_to_head()
        assert sorted(span.name for span in receiver.spans()) == ["finish run", "train run", "train steps"]
        assert runner.position == tracker.store.max_position() and runner.stats.skipped == 1
        position, reason = runner.skipped[0]
        assert reason == "'save checkpoint' span: ValueError: Value out of range"
        saved_at = [note.id for note in tracker.store.read_log(1, 100)
                    if note.topic.endswith(":Run.CheckpointSaved")]
        assert [position] == saved_at and saved is not None
        runner.transport.close()
    finally:
        receiver.stop()
