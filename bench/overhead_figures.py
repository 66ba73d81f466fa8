"""The figures of ``training_overhead.py``: paired rounds (tracked against baseline, run side by
side in one process), reduced to a median with its spread.

Rounds swing with the machine's load (a round is a fraction of a second), so the median of a
few rounds is itself uncertain. Beside the median each figure carries the rounds' quartiles
and a bootstrap interval of the median: the rounds resampled with replacement (``RESAMPLES``
times, a fixed seed: the same rounds give the same interval), the median of each resample,
and the 5th and 95th percentiles of those medians. It says how far the median could move if
the bench ran again under the same conditions, not how far the load can push a round.
"""

from __future__ import annotations

import random
import statistics

from common import Report, percentile

RESAMPLES = 2000


def median_interval(values: list[float], level: float = 90.0,
                    seed: int = 0) -> tuple[float, float]:
    """The bootstrap ``level`` % interval of the median of ``values`` (module doc)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(RESAMPLES))
    tail = (100.0 - level) / 2
    return percentile(medians, tail), percentile(medians, 100.0 - tail)


def spread(values: list[float]) -> str:
    """The rounds' min..max, quartiles and the 90 % interval of their median, as text."""
    ordered = sorted(values)
    low, high = median_interval(values)
    return (f"median 90 % CI {low:+.2f}..{high:+.2f}, quartiles "
            f"{percentile(ordered, 25):+.2f}..{percentile(ordered, 75):+.2f}, "
            f"rounds {ordered[0]:+.1f}..{ordered[-1]:+.1f}")


def overhead(report: Report, name: str, values: list[float], target: float | None,
             what: str) -> None:
    """One overhead figure: the median over rounds, ``what`` it measures and its spread."""
    report.figure(name, statistics.median(values), "%", fmt="{:,.2f}",
                  target=None if target is None else ("<=", target),
                  note=f"{what}; {spread(values)}")


def figures(report: Report, steps: int, saves: int, target: float,
            baselines: list[dict[str, float]], tracked: list[dict[str, float]]) -> None:
    """The figures of one tracked kind against the baselines of the same rounds."""
    per_step = 1000 / steps
    pairs = list(zip(tracked, baselines, strict=True))

    def ratio(key: str) -> list[float]:
        return [100 * (t[key] / b[key] - 1) for t, b in pairs]

    report.figure("baseline step (median)",
                  statistics.median(b["wall"] * per_step for b in baselines), "ms", fmt="{:,.3f}")
    report.figure("tracked step (median)",
                  statistics.median(t["wall"] * per_step for t in tracked), "ms", fmt="{:,.3f}")
    overhead(report, "overhead, wall (median)", ratio("wall"), target,
             "tracked/baseline - 1 of whole runs")
    overhead(report, "overhead, process CPU", ratio("process"), target,
             "all threads, writer flushed")
    overhead(report, "overhead, thread CPU", ratio("cpu"), None, "the training thread's CPU")
    # the training thread's extra time in the calls: log_step and the sampler, and what a
    # checkpoint costs beyond the baseline's own torch.save (the baseline saves too)
    overhead(report, "overhead, timed calls",
             [100 * (t["log"] + t["save"] - b["log"] - b["save"]) / b["wall"] for t, b in pairs],
             target, "log_step + sampler + (save_checkpoint - torch.save), wall")
    overhead(report, "overhead, CPU in calls",
             [100 * (t["inside_cpu"] - b["inside_cpu"]) / b["cpu"] for t, b in pairs], None,
             "the same calls' CPU time on the training thread")
    report.figure("log_step + sampler", statistics.median(
        (t["log"] - b["log"]) * 1e6 / steps for t, b in pairs), "us/step", fmt="{:,.2f}",
        note="beyond the baseline's clock reads")
    report.figure("save_checkpoint", statistics.median(t["save"] * 1e3 / saves for t in tracked),
                  "ms each", fmt="{:,.2f}", note="on the training thread, the last wait included")
    report.figure("torch.save (baseline)", statistics.median(
        b["save"] * 1e3 / saves for b in baselines), "ms each", fmt="{:,.2f}", note="no fsync")

