"""An exporter on a daemon thread, for a training process: the OTLP one
(``Tracker(export_otlp=True)``) and the OpenLineage one (when ``OPENLINEAGE_URL`` is set).

Telemetry never breaks training (STYLE habit 9): nothing here raises into the caller's thread
and nothing blocks it. The thread follows the log with a runner (a ``log_follower.LogFollower``:
``OtlpExportRunner``, ``OpenLineageRunner``); a failure is logged once (a warning on the
runner's logger), counted in ``failures``, and retried with backoff (0.5 s doubling to 30 s) for
as long as the process runs: the output stays in the event store behind the tracked position, so
nothing is lost, and ``lineage export otlp`` / ``openlineage`` sends whatever this process did
not. A request the consumer refuses for good (``ExportRejectedError``: bad configuration) stops
the thread after logging it.

``close(drain=True)`` stops the thread. When asked to drain (the tracker wrote something) and
the collector is healthy, it first waits up to ``drain_s`` for the spans of everything committed
so far to go out (so a script's run shows up in Jaeger when it ends); while the collector is
failing it does not wait. In ``strict`` mode (tests) ``raise_if_strict()`` raises the first
failure, which is otherwise only logged.
"""

from __future__ import annotations

import logging
import threading
import time

from lineage.errors import ExportError, ExportRejectedError

from .log_follower import LogFollower

log = logging.getLogger("lineage.export")

FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
JOIN_S = 2.0


class BackgroundExporter:
    """Runs ``runner`` on a daemon thread; see the module docstring for the contract."""

    def __init__(self, runner: LogFollower, *, poll_s: float = 0.5, drain_s: float = 10.0,
                 strict: bool = False) -> None:
        self.runner = runner
        self.poll_s = poll_s
        self.drain_s = drain_s
        self.strict = strict
        self.failures = 0
        self.first_error: BaseException | None = None
        self.healthy = True
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.log = runner.log
        self._thread = threading.Thread(target=self._loop, name=f"lineage-{runner.name}-export",
                                        daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> BackgroundExporter:
        self._thread.start()
        return self

    def close(self, drain: bool = True) -> None:
        """Drain (when ``drain``: see the module doc), stop and join the thread (at most ~2 s
        after the drain). Never raises; see ``raise_if_strict``."""
        if drain and self._thread.is_alive() and self.healthy:
            self._drain()
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_S)
        try:
            self.runner.transport.close()
        except Exception:  # closing a broken connection is not worth a message
            self.log.debug("closing the transport failed", exc_info=True)

    def raise_if_strict(self) -> None:
        """In strict mode, raise the first failure (an ExportError) if there was one, or an
        ExportError naming the first event the runner skipped (``LogFollower.skipped``)."""
        if self.strict and self.first_error is None and self.runner.skipped:
            position, reason = self.runner.skipped[0]
            raise ExportError(self.runner.endpoint,
                              f"skipped the event at position {position}: {reason}",
                              self.runner.what)
        if self.strict and self.first_error is not None:
            error = self.first_error
            raise error if isinstance(error, ExportError) else ExportError(
                self.runner.endpoint, repr(error), self.runner.what)

    def _drain(self) -> None:
        target = self.runner.head()
        deadline = time.monotonic() + self.drain_s
        while (self._thread.is_alive() and self.healthy and self.runner.position < target
               and time.monotonic() < deadline):
            self._wake.set()
            time.sleep(0.02)

    def _loop(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                self.runner.export_to_head(self._stop)
            except ExportRejectedError as error:
                self._failed(error)
                return
            except Exception as error:  # never let the thread die on a surprise
                self._failed(error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if not self.healthy:
                self.log.info("%s to %s recovered after %d failure(s)",
                              self.runner.what, self.runner.endpoint, self.failures)
            self.healthy, backoff = True, FIRST_BACKOFF_S
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        self.healthy = False
        if self.first_error is None:
            self.first_error = error
            self.log.warning("%s is failing (%s); its %s wait in the event store from "
                             "position %d and are sent when %s is back (or by 'lineage "
                             "export')", self.runner.what, error, self.runner.output,
                             self.runner.position, self.runner.endpoint)
        else:
            self.log.debug("%s failed again: %s", self.runner.what, error)

