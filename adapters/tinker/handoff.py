"""The monitor hands a live client to the trainer, in one process: ``TinkerRecovery``.

    with TinkerRecovery(tracker, service_client, recorder, interval_s=30) as recovery:
        client = service_client.create_lora_training_client(...).result()
        step = 0
        while step < total:
            resumed = recovery.replacement(client)            # a dict lookup: no request
            if resumed is not None:
                client, step = resumed.client, resumed.step     # go on from the checkpoint
            try:
                ...train one step on client...; step += 1
            except Exception:
                resumed = recovery.wait(client, timeout=600)   # the monitor will notice
                client, step = resumed.client, resumed.step

A ``RecoveryMonitor`` polls on a daemon thread (``TinkerRunStatusSource``, and the local
store's recorded failures: a poisoned client, ``tinker.server_failures``) and recovers through
``TinkerResume``, which creates the new ``TrainingClient`` in this process (recorded in the
new run); ``replacement(client)`` / ``wait(client)`` hand it to the training loop with the
step its checkpoint holds. The ``--exec`` route of ``lineage monitor`` stays for a monitor in
another process (a new trainer process cannot be given a live client object).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from lineage.adapters.tinker.recorder import TinkerRecorder
from lineage.adapters.tinker.resume import TinkerResume
from lineage.adapters.tinker.status_source import TinkerRunStatusSource
from lineage.application.monitor import LocalRunStatusSource, RecoveryMonitor


@dataclass(frozen=True)
class Resumed:
    """A recovered client: train on ``client`` (recording into run ``run_id``) from the step
    after ``step`` (the optimizer steps its checkpoint holds)."""

    client: Any
    run_id: Any
    step: int
    replaces: str  # the model id of the client it replaces


class TinkerRecovery:
    """See the module docstring. ``source``: the status source (default: a
    ``TinkerRunStatusSource`` on ``tracker`` with ``base_url``/``api_key`` or the SDK's
    environment); ``recover``: options for ``Tracker.recover`` (``retry``, ``strategy``...)."""

    def __init__(self, tracker: Any, service_client: Any, recorder: TinkerRecorder, *,
                 interval_s: float = 30.0, source: Any = None, base_url: str | None = None,
                 api_key: str | None = None, restore_optimizer: bool = True,
                 allow_weights_only: bool = False, **recover: Any) -> None:
        self.tracker = tracker
        self.recorder = recorder
        self.resume = TinkerResume(service_client, recorder, restore_optimizer=restore_optimizer,
                                   allow_weights_only=allow_weights_only, on_client=self._handed)
        sources = [source or TinkerRunStatusSource(tracker, base_url=base_url, api_key=api_key),
                   LocalRunStatusSource(tracker)]
        self.monitor = RecoveryMonitor(tracker, sources, interval_s=interval_s,
                                       resume=self.resume, restore_optimizer=restore_optimizer,
                                       allow_weights_only=allow_weights_only, **recover)
        self._resumed: dict[str, Resumed] = {}  # old model id -> its replacement
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TinkerRecovery:
        self.recorder.flush()  # the runs the monitor looks for are recorded
        self._thread = threading.Thread(target=self.monitor.run, kwargs={"stop": self._stop},
                                        name="lineage-tinker-recovery", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> TinkerRecovery:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def replacement(self, client: Any) -> Resumed | None:
        """The client that replaces ``client`` once the monitor recovered its run (following
        a chain of recoveries to the newest), else None. Never blocks."""
        with self._changed:
            return self._newest(str(client.model_id))

    def wait(self, client: Any, timeout: float | None = None) -> Resumed:
        """Block until the monitor recovered ``client``'s run; TimeoutError after
        ``timeout`` seconds."""
        self.recorder.flush()  # the failure that stopped the loop is recorded: the monitor sees it
        with self._changed:
            resumed = self._changed.wait_for(lambda: self._newest(str(client.model_id)), timeout)
        if resumed is None:
            raise TimeoutError(f"no recovery of Tinker training client {client.model_id} "
                               f"within {timeout}s (see the monitor's errors and actions)")
        return resumed

    def _newest(self, model_id: str) -> Resumed | None:
        found = None
        while model_id in self._resumed:
            found = self._resumed[model_id]
            model_id = str(found.client.model_id)
        return found

    def _handed(self, client: Any, new_run: Any) -> None:
        """``TinkerResume``'s callback, on the monitor's thread."""
        view = self.tracker.run(new_run.id)
        self.recorder.flush(tracker=False)
        old = self.recorder.model_id_of(view.resumed_from)
        if old is None:  # a run this process's clients never recorded: not ours to hand over
            return
        self.recorder.put((self.recorder.on_superseded, old))  # its in-flight calls: not recorded
        with self._changed:
            self._resumed[old] = Resumed(client, new_run.id, view.start_step, old)
            self._changed.notify_all()
