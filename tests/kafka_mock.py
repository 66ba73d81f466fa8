"""librdkafka's mock cluster (bundled with ``confluent-kafka``) as a Kafka broker for tests: it
speaks the real Kafka protocol over loopback TCP, so producers and consumers of any client
reach it at ``bootstrap``, as they would a broker.

The cluster belongs to the client created with ``test.mock.num.brokers`` and lives as long as
it does: ``MockKafka`` holds one such producer, and reads the cluster's address from the line
librdkafka logs when it starts one ("Mock cluster enabled ... replaced with 127.0.0.1:PORT").
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class MockKafka:
    """A running mock cluster; ``bootstrap`` is its ``host:port``; ``close()`` stops it."""

    def __init__(self, brokers: int = 1) -> None:
        self._log = _Lines()
        logger = logging.getLogger(f"tests.kafka_mock.{uuid.uuid4().hex}")
        logger.addHandler(self._log)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        self._holder: Producer | None = Producer(
            {"test.mock.num.brokers": brokers, "logger": logger})
        self.bootstrap = self._address()

    def _address(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self._log.lines:
                found = re.search(r"Mock cluster enabled.*replaced with (\S+)", line)
                if found:
                    return found.group(1)
            self._holder.poll(0.05)  # type: ignore[union-attr]  # serves the log queue
        raise RuntimeError(f"librdkafka logged no mock cluster address: {self._log.lines}")

    def read(self, topic: str, at_least: int, *, timeout_s: float = 20.0,
             quiet_s: float = 0.5) -> list[tuple[str, bytes, int]]:
        """Every message of ``topic`` from the beginning of each partition, read by a real
        consumer: (key, value, partition), in order within a partition. Reads until it has
        ``at_least`` and nothing more came for ``quiet_s`` (so a duplicate shows up), or
        raises after ``timeout_s``."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "tests",
                             "enable.auto.commit": False})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            found: list[tuple[str, bytes, int]] = []
            deadline, last = time.monotonic() + timeout_s, time.monotonic()
            while len(found) < at_least or time.monotonic() - last < quiet_s:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read {len(found)} of {at_least} message(s) of {topic}")
                message = consumer.poll(0.1)
                if message is None or message.error():
                    continue
                found.append((message.key().decode(), message.value(), message.partition()))
                last = time.monotonic()
            return found
        finally:
            consumer.close()

    def close(self) -> None:
        self._holder = None  # librdkafka stops the cluster with the client that owns it
