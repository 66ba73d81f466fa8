"""``FirstRows`` (``lineage.application.log_scan``) in a process of its own, so that two cores
read and hash the log at once during ``lineage verify``.

The process is a fresh interpreter (``python -m lineage.adapters.process_scan``: not a fork,
since the caller may have threads, a writer's or a sealer's, whose locks a fork would copy
held; and not ``multiprocessing``'s spawn, which imports the caller's ``__main__`` again, so a
training script without a main guard would run twice). It reads ``(job, end, sizes)`` pickled
on its stdin (``job``: a picklable callable the composition root makes, which opens its own
connection to the same store; the URL goes through the pipe, never the command line), runs
``job(end, sizes)`` and writes the pickled ``Scan`` to its stdout. Anything that goes wrong
there (no process, a store error) is logged and answered with None: the caller then scans
those rows itself, so the outcome never depends on the helper, only the time does.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable

from lineage.application.log_scan import Scan, Waiter

log = logging.getLogger("lineage.verify")
Job = Callable[[int, frozenset[int]], Scan]


class ProcessFirstRows:
    """Runs ``job`` in a new process per ``start``. Thread-safe.

    ``wanted``: for logs of ``min_rows`` to ``max_rows`` positions (a process costs about 0.3 s
    of CPU to start, the time of ~150,000 rows; the rows after the first part keep their leaf
    hashes until the first part's tree is known, ~65 bytes each, so a longer log is scanned in
    one process), while the load average (``load``: the last minute's) leaves a core free; on a
    busy machine a second process only adds its start-up and the wait for the slower of the
    two (measured: 0.87-0.93 of the one-process rate at load 11). Where no load average or
    core count can be had, one process. The second process gets ``timeout_s`` to answer."""

    def __init__(self, job: Job, *, min_rows: int = 400_000, max_rows: int = 4_000_000,
                 load: Callable[[], float] | None = None, cores: int | None = None,
                 timeout_s: float = 600.0) -> None:
        self.job, self.min_rows, self.max_rows = job, min_rows, max_rows
        self.load = load or (lambda: os.getloadavg()[0])
        self.cores = cores or _cores()
        self.timeout_s = timeout_s

    def wanted(self, rows: int) -> bool:
        if not self.min_rows <= rows <= self.max_rows:
            return False
        try:
            return self.load() < self.cores - 0.5
        except OSError:  # no load average here
            return False

    def start(self, end: int, sizes: frozenset[int]) -> Waiter:
        # -P: the current folder is not put on the path of a process whose answer is trusted
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        try:
            child = subprocess.Popen([sys.executable, "-P", "-m", __name__],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        except OSError as error:  # no process to be had: the caller scans those rows
            log.info("lineage verify: one process only (%s)", error)
            return lambda abandon=False: None
        answer: list[tuple[bytes, bytes]] = []
        request = pickle.dumps((self.job, end, sizes))

        def talk() -> None:
            try:
                answer.append(child.communicate(request, timeout=self.timeout_s))
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()

        talking = threading.Thread(target=talk, name="lineage-verify-child", daemon=True)
        talking.start()  # the pipes wait in the kernel, without the GIL, while this process scans

        def wait(abandon: bool = False) -> Scan | None:
            if abandon:
                child.kill()
            talking.join()
            out, err = answer[0] if answer else (b"", b"no answer in time")
            if child.returncode == 0 and not abandon:
                try:
                    return pickle.loads(out)  # our own child's answer
                except Exception as error:
                    err = f"{type(error).__name__}: {error}".encode()
            last = (err.decode(errors="replace").strip().splitlines() or [str(child.returncode)])
            log.info("lineage verify: the second process failed (%s); scanning its rows here",
                     last[-1])
            return None

        return wait


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _main() -> None:
    job, end, sizes = pickle.load(sys.stdin.buffer)  # from the parent process
    sys.stdout.buffer.write(pickle.dumps(job(end, sizes)))


if __name__ == "__main__":
    _main()
