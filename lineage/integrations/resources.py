"""``ResourceSampler``: what the training process uses (RSS, CPU; GPU memory and utilisation when
CUDA or NVML is there), sampled at a time interval, not per step.

    sampler = ResourceSampler(interval_s=10)
    run.log_step(step, {"loss": loss}, resources=sampler.poll())   # a dict every 10 s, else None

``poll()`` costs a clock read when no sample is due, so it can sit in the step loop: a step
carries resources at most once per interval (``log_step(resources=None)`` stays on its fast
path). Needs no framework: it reads ``/proc`` (else ``getrusage``), and CUDA through torch only
when the process already imported torch and initialised CUDA (it never starts a CUDA context).
Never raises: a probe that fails is logged once and left out of later samples.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
_MB = 1024 * 1024


class ResourceSampler:
    """Samples this process's resources; ``poll()`` hands one out per ``interval_s``.

    Not thread-safe: poll from the training thread. ``clock`` (seconds, monotonic) and
    ``cpu_seconds`` (this process's user + system CPU time) are injectable for tests.
    """

    def __init__(self, interval_s: float = 10.0, *, clock: Callable[[], float] = time.monotonic,
                 cpu_seconds: Callable[[], float] | None = None, gpu: bool = True) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, int | float) \
                or not 0 <= interval_s < 10**7:
            from lineage.errors import ValidationError
            raise ValidationError("interval_s", "must be a number of seconds >= 0", interval_s)
        self.interval_s = float(interval_s)
        self._clock = clock
        self._cpu_seconds = cpu_seconds or _process_cpu_seconds
        self._gpu = gpu
        self._failed: set[str] = set()
        self._last_wall = clock()
        self._last_cpu = self._cpu_seconds()
        self._next = self._last_wall + self.interval_s
        self.samples = 0

    def poll(self) -> dict[str, float] | None:
        """A sample when ``interval_s`` has passed since the last one handed out, else None."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        return self.sample(now)

    def sample(self, now: float | None = None) -> dict[str, float]:
        """Sample now: ``rss_mb`` (or ``rss_peak_mb`` where /proc is missing), ``cpu_percent``
        (CPU time over wall time since the previous sample; 100 = one core busy), and with
        CUDA in use ``gpu_mem_mb``, ``gpu_mem_peak_mb`` and ``gpu_util_percent``."""
        now = self._clock() if now is None else now
        out: dict[str, float] = {}
        self._probe("rss", out, lambda: _rss(out))
        cpu = self._cpu_seconds()
        wall = now - self._last_wall
        if wall > 0:
            out["cpu_percent"] = round(100.0 * (cpu - self._last_cpu) / wall, 2)
        self._last_wall, self._last_cpu = now, cpu
        if self._gpu:
            self._probe("cuda", out, lambda: _cuda(out))
        self.samples += 1
        return out

    def _probe(self, name: str, out: dict[str, float], probe: Callable[[], None]) -> None:
        if name in self._failed:
            return
        try:
            probe()
        except Exception as error:  # telemetry never breaks training (STYLE 9)
            self._failed.add(name)
            log.warning("resource sampler: %s probe failed, left out from now on: %r", name, error)


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _rss(out: dict[str, float]) -> None:
    try:
        with open("/proc/self/statm", "rb") as handle:
            pages = int(handle.read().split()[1])
        out["rss_mb"] = round(pages * os.sysconf("SC_PAGE_SIZE") / _MB, 2)
    except (OSError, ValueError, IndexError):
        import resource  # no /proc (macOS): the peak is what getrusage knows
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_peak_mb"] = round(peak / (_MB if sys.platform == "darwin" else 1024), 2)


def _cuda(out: dict[str, float]) -> None:
    torch: Any = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    out["gpu_mem_mb"] = round(torch.cuda.memory_allocated() / _MB, 2)
    out["gpu_mem_peak_mb"] = round(torch.cuda.max_memory_allocated() / _MB, 2)
    with contextlib.suppress(Exception):  # no NVML (pynvml) here: memory only
        out["gpu_util_percent"] = float(torch.cuda.utilization())
