"""The composition root of the exporters: OTLP and OpenLineage runners, their transports and
tracked positions, and the background exporters a tracker starts (DESIGN §6). ``bootstrap``
builds trackers with these; nothing here imports it."""

from __future__ import annotations

import logging
from typing import Any

from lineage.codec.mapper import make_mapper
from lineage.errors import ConfigurationError
from lineage.ports import BackgroundExport, EventStore, PositionStore


def open_positions(target: Any) -> PositionStore:
    """The tracked-position table in a database: a URL (see ``open_store``) or an engine."""
    from lineage.adapters.database import engine_for
    from lineage.adapters.positions import SqlAlchemyPositionStore

    return SqlAlchemyPositionStore(engine_for(target) if isinstance(target, str) else target)


def otlp_transport(settings: Any, *, retry_for_s: float | None = None, client: Any = None) -> Any:
    """The transport ``settings.protocol`` names (``lineage.config.otlp.OtlpSettings``);
    ``client`` is an httpx.Client (HTTP) or a grpc.Channel (gRPC) to use instead of a new one."""
    from lineage.adapters.otlp.transport import (
        OtlpGrpcTransport,
        OtlpHttpTransport,
        RetryWindow,
        TlsFiles,
    )
    from lineage.config.otlp import GRPC

    retry = RetryWindow(settings.retry_for_s if retry_for_s is None else retry_for_s)
    common = {"headers": settings.headers, "timeout_s": settings.timeout_s, "retry": retry,
              "compression": settings.compression,
              "tls": TlsFiles(settings.certificate, settings.client_key,
                              settings.client_certificate)}
    if settings.protocol == GRPC:
        return OtlpGrpcTransport(settings.endpoint, channel=client, **common)
    return OtlpHttpTransport(settings.endpoint, client=client, **common)


def otlp_runner(store: EventStore, positions: PositionStore, settings: Any, transport: Any, *,
                name: str = "otlp", track: bool = True, start: int | None = None) -> Any:
    """An ``OtlpExportRunner`` following ``store``'s log from ``positions[name]`` (or
    ``start``), sending through ``transport``."""
    from lineage.adapters.otlp.encoder import OtlpEncoder
    from lineage.adapters.otlp.runner import OtlpExportRunner
    from lineage.spans.builder import SpanBuilder
    from lineage.spans.identity import StepGrouping

    builder = SpanBuilder(store, make_mapper(), grouping=StepGrouping(settings.steps_per_span))
    encoder = OtlpEncoder(settings.service_name, settings.resource)
    return OtlpExportRunner(store, positions, builder, encoder,
                            transport, name=name, batch_spans=settings.batch_spans,
                            batch_bytes=settings.batch_bytes, track=track, start=start)


def start_otlp_export(store: EventStore, engine: Any, export: Any,
                      **overrides: Any) -> BackgroundExport | None:
    """Start the background exporter for a tracker when OTLP export is enabled (``export``
    True, or None with an OTLP endpoint or ``LINEAGE_OTLP_EXPORT=on`` in the environment);
    None when it is not. Positions live in ``engine``'s database (the store's). ``export``
    may also be an OpenTelemetry SDK ``SpanExporter``: the spans go to it instead of a
    collector (``lineage.adapters.otlp.sdk_sink``), under the position name ``sdk``.

    Raises ConfigurationError for a malformed endpoint, header or other OTLP setting.
    """
    from lineage.adapters.background_export import BackgroundExporter
    from lineage.config.otlp import OtlpSettings

    sink = None if export is None or isinstance(export, bool) else export
    settings = OtlpSettings.load_if_enabled(export=True if sink is not None else export,
                                            **overrides)
    if settings is None:
        return None
    if sink is not None:
        from lineage.adapters.otlp.sdk_sink import SdkExporterTransport

        runner = otlp_runner(store, open_positions(engine), settings, SdkExporterTransport(sink),
                             name="sdk")
    else:  # one attempt per call: the background loop owns the backoff, so it knows at once
        # when the collector is failing (and Tracker.close() does not wait on it)
        runner = otlp_runner(store, open_positions(engine), settings,
                             otlp_transport(settings, retry_for_s=0))
    return BackgroundExporter(runner, poll_s=settings.poll_s, drain_s=settings.drain_s,
                              strict=settings.strict).start()


def start_openlineage_export(store: EventStore, engine: Any) -> BackgroundExport | None:
    """The OpenLineage exporter on a background thread for a tracker, when
    ``lineage.config.openlineage`` says so (an OpenLineage URL configured); else None."""
    from lineage.config.openlineage import OpenLineageSettings

    settings = OpenLineageSettings.load()
    if not settings.enabled:
        return None
    from lineage.adapters.background_export import BackgroundExporter

    try:
        from lineage.adapters.openlineage.compose import openlineage_runner

        runner = openlineage_runner(store, open_positions(engine), make_mapper(), settings)
    except (ImportError, ConfigurationError) as error:  # telemetry never stops training
        logging.getLogger("lineage.openlineage").warning(
            "OpenLineage export is configured but unavailable (%s); install lineage[openlineage]"
            " (and what the configured transport needs) or set LINEAGE_OPENLINEAGE_EXPORT=off",
            error)
        return None
    return BackgroundExporter(runner, poll_s=settings.poll_s).start()


class BackgroundExports:
    """The tracker's background exporters (OTLP, OpenLineage) as one ``BackgroundExport``."""

    def __init__(self, *exports: BackgroundExport | None) -> None:
        self.exports = [export for export in exports if export is not None]

    def close(self, *, drain: bool) -> None:
        for export in self.exports:
            export.close(drain=drain)

    def raise_if_strict(self) -> None:
        for export in self.exports:
            export.raise_if_strict()


def exports(otlp: BackgroundExport | None, openlineage: BackgroundExport | None) -> Any:
    """One background exporter as it is (``tracker._otlp`` stays the OTLP one), or both."""
    return otlp if openlineage is None else BackgroundExports(otlp, openlineage)
