"""OpenLineage events to Kafka at least once: the ``openlineage-python`` client's Kafka
transport configures the producer (``OPENLINEAGE__TRANSPORT__CONFIG``: librdkafka settings;
``__TOPIC``; ``__MESSAGE_KEY``), and this module produces through that producer, checking each
message's delivery report.

The client's own ``KafkaTransport.emit`` reports a failed delivery only by logging it (its
``on_delivery`` callback), so an exporter could not tell that the broker never took an event.
``AcknowledgedKafka.emit_all`` produces a page's events, then flushes for at most ``timeout_s``
and returns how many of them, from the first, the broker acknowledged (a delivery report without
error), with why the next one was not (a delivery error, or "not acknowledged in time"). The runner
moves its position only past notifications whose events were all acknowledged, so a rerun sends
the rest again: at least once, duplicates possible (an event the broker wrote but whose
acknowledgement did not arrive in time is sent again). After a failure, what is still queued is
purged, so the producer starts the next attempt empty.

Messages are keyed as the client keys run events (``run:{namespace}/{job}``, the root job of a
resume chain when the ``parent`` facet names one, or the configured ``messageKey``), so a run's
events land in one partition (in order unless the producer retries a batch: set
``enable.idempotence`` in the transport's config for strict order). Threading: one
``emit_all`` at a time (the runner's).
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import KafkaException, Producer

PURGE_WAIT_S = 1.0


def message_key(event: dict[str, Any]) -> str:
    """The client's key for a run event: its resume chain's root job, else its own job."""
    parent = event.get("run", {}).get("facets", {}).get("parent") or {}
    job = (parent.get("root") or {}).get("job") or parent.get("job") or event["job"]
    return f"run:{job['namespace']}/{job['name']}"


class AcknowledgedKafka:
    """Produces through the client's Kafka producer and waits for the broker's
    acknowledgements (module doc). ``transport``: a configured
    ``openlineage.client.transport.kafka.KafkaTransport``."""

    kind = "kafka"

    def __init__(self, transport: Any, *, timeout_s: float) -> None:
        if transport.producer is None:  # the client defers it in one Airflow setting only
            transport.producer = Producer(transport.kafka_config.config)
        self.producer = transport.producer
        self.topic: str = transport.topic
        self.key: str | None = transport.message_key
        self.timeout_s = timeout_s
        self.servers = transport.kafka_config.config.get("bootstrap.servers", "?")

    @property
    def endpoint(self) -> str:
        return f"Kafka topic {self.topic!r} at {self.servers}"

    def emit_all(self, events: list[dict[str, Any]]) -> tuple[int, str | None]:
        """Produce ``events``, flush, and return (how many from the first were acknowledged,
        why the next was not, or None). Blocks about ``timeout_s`` for the flush, plus as
        much for each event met with a full local queue, plus a purge's second."""
        acked: list[bool | None] = [None] * len(events)  # None: no delivery report yet
        errors: dict[int, str] = {}

        def report(index: int) -> Any:
            def on_delivery(error: Any, _message: Any) -> None:
                acked[index] = error is None
                if error is not None:
                    errors[index] = str(error)
            return on_delivery

        for index, event in enumerate(events):
            try:
                self._produce(event, report(index))
            except Exception as error:  # refused before it left (full queue, broker error,
                # an event that cannot be encoded or keyed): stop here, purge what went
                errors[index] = f"{type(error).__name__}: {error}"
                break
        left = self.producer.flush(self.timeout_s)  # the reports of what was produced
        delivered = next((i for i, ok in enumerate(acked) if not ok), len(events))
        if delivered == len(events):
            return delivered, None
        if delivered in errors:
            reason = f"event {delivered + 1} of {len(events)} was refused: {errors[delivered]}"
        else:
            reason = (f"{left} of {len(events)} event(s) not acknowledged by the broker within "
                      f"{self.timeout_s:g} s (is it reachable?)")
        self._purge()
        return delivered, reason

    def _produce(self, event: dict[str, Any], on_delivery: Any) -> None:
        value = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        key = self.key or message_key(event)
        try:
            self.producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
        except BufferError:  # the local queue is full: serve reports, then once more
            self.producer.flush(self.timeout_s)
            self.producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)

    def _purge(self) -> None:
        """Drop what is queued or in flight (its reports arrive as purged), so a retry does
        not race old messages."""
        try:
            self.producer.purge()
            self.producer.flush(PURGE_WAIT_S)
        except KafkaException:  # the attempt already failed; a failed purge adds nothing
            pass

    def close(self, timeout: float = -1) -> bool:
        """Deliver what is queued for at most ``timeout_s``, then drop the rest (bounded: a
        dead broker never hangs a closing tracker). True when nothing was left."""
        left = self.producer.flush(self.timeout_s)
        if left:
            self._purge()
        return not left
