"""A tinker-cookbook ``ml_log.Logger`` that records into lineage, so a cookbook recipe records
live:

    ml_logger = ml_log.setup_logging(log_dir=log_path, config=config)
    add_lineage_logger(ml_logger, tracker, config)  # setup_logging builds a fixed list

``log_hparams(config)`` starts the run (the config in the job's metadata), ``log_metrics``
logs a step (numeric values only; a record without ``step`` gets the next number), ``close``
finishes the run ``completed``. Pass ``run=`` (a run handle, e.g. ``recorder.run_of(model_id)``
from ``instrument``) to add the cookbook's metrics to the run the instrumented client records.
Never raises into the recipe: a failure is logged once and counted in ``errors``.
"""

from __future__ import annotations

import logging
from typing import Any

from tinker_cookbook.utils import ml_log

log = logging.getLogger(__name__)


class LineageLogger(ml_log.Logger):
    def __init__(self, tracker: Any, *, name: str = "tinker-cookbook",
                 job: dict[str, Any] | None = None, run: Any = None) -> None:
        self.tracker = tracker
        self.name = name
        self.job = dict(job or {})
        self.run = run
        self.errors = 0
        self._next_step = 0
        self._owns_run = run is None

    def log_hparams(self, config: Any) -> None:
        self._guard(self._start, config)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._guard(self._log, metrics, step)

    def close(self) -> None:
        if self._owns_run and self.run is not None and self.run.finished_status is None:
            self._guard(lambda: self.run.finish("completed").wait())

    def _start(self, config: Any = None) -> None:
        if self.run is not None:
            return
        metadata = dict(self.job.get("metadata") or {})
        if config is not None:
            metadata["config"] = ml_log.dump_config(config)
        self.run = self.tracker.start_run(self.name, job={**self.job, "metadata": metadata},
                                          tags={"source": "tinker-cookbook"})

    def _log(self, metrics: dict[str, Any], step: int | None) -> None:
        self._start()
        step = self._next_step if step is None else step
        self._next_step = step + 1
        numbers = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        self.run.log_step(step, numbers)

    def _guard(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception:  # telemetry never breaks the recipe
            self.errors += 1
            if self.errors == 1:
                log.exception("lineage: the cookbook logger failed to record")


def add_lineage_logger(ml_logger: Any, tracker: Any, config: Any = None,
                       **options: Any) -> LineageLogger:
    """Add a LineageLogger to the ``MultiplexLogger`` that ``ml_log.setup_logging`` returned
    (which already logged its config to the others: pass ``config`` to record it too)."""
    logger = LineageLogger(tracker, **options)
    ml_logger.loggers.append(logger)
    if config is not None:
        logger.log_hparams(config)
    return logger
