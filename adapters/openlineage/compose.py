"""Wiring of the OpenLineage exporter, for the composition root (``lineage.bootstrap``)."""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.persistence import Mapper

from lineage.errors import ConfigurationError
from lineage.ports import EventStore, PositionStore

from .events import OpenLineageBuilder
from .runner import JsonLinesTransport, OpenLineageRunner

log = logging.getLogger(__name__)


def openlineage_runner(store: EventStore, positions: PositionStore, mapper: Mapper,
                       settings: Any, *, name: str = "openlineage", start: int | None = None,
                       dry_run: Any = None, retry: dict[str, Any] | None = None) -> OpenLineageRunner:
    """A runner emitting through HTTP to ``settings.url`` when set, else the transport the
    ``openlineage-python`` client configures from its environment; ``dry_run`` (a text stream)
    prints JSON lines and tracks nothing; Kafka goes through ``kafka.AcknowledgedKafka``
    (acknowledged, ``settings.timeout_s`` per page); ``retry`` overrides the HTTP transport's retries
    (urllib3 ``Retry`` fields). Raises ConfigurationError when the client's configured
    transport cannot be built for want of a package."""
    if dry_run is not None:
        transport: Any = JsonLinesTransport(dry_run)
        endpoint = "stdout (dry run)"
    elif settings.url is not None:
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        config = {"url": settings.url, "timeout": settings.timeout_s,
                  **({"retry": retry} if retry is not None else {})}
        transport = HttpTransport(HttpConfig.from_dict(config))
        endpoint = settings.url.rstrip("/") + "/api/v1/lineage"
    else:
        from openlineage.client import OpenLineageClient

        try:
            transport = OpenLineageClient().transport
        except ImportError as error:  # a transport's own package (Kafka: confluent-kafka)
            raise ConfigurationError(
                f"the OpenLineage client's configured transport needs a package that is not "
                f"installed ({error}); install it (Kafka: pip install 'lineage[kafka]', or "
                "'openlineage-python[kafka]')"
                " or set OPENLINEAGE_URL for HTTP") from None
        endpoint = f"{getattr(transport, 'kind', 'openlineage')} transport (client configuration)"
        if getattr(transport, "kind", None) == "kafka":  # acknowledged delivery (kafka.py)
            from .kafka import AcknowledgedKafka

            transport = AcknowledgedKafka(transport, timeout_s=settings.timeout_s)
            endpoint = transport.endpoint
        elif any(getattr(inner, "kind", None) == "kafka"
                 for inner in getattr(transport, "transports", ())):
            log.warning("lineage: a Kafka transport inside the OpenLineage client's composite "
                        "transport is not acknowledged (the composite only logs what fails): "
                        "configure Kafka as the transport itself for at-least-once delivery")
    builder = OpenLineageBuilder(store, mapper, settings.namespace)
    return OpenLineageRunner(store, positions, builder, transport, endpoint=endpoint, name=name,
                             track=dry_run is None, start=start)
