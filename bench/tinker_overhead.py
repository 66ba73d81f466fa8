"""What the Tinker instrumentation adds to each SDK call on the caller's thread.

Two real ``tinker`` TrainingClients on one fake Tinker service (loopback), in the same process
and the same run: one instrumented by ``lineage.adapters.tinker.instrument``, one not. Each
iteration times ``forward_backward`` and ``optim_step`` on both (the call itself, until it
returns its future, with ``time.perf_counter_ns``), alternating which client goes first; every
``--window`` iterations the futures are awaited so the backlog stays bounded. Sampling calls
are timed the same way. The overhead is the median of the paired per-iteration differences
(instrumented - plain), beside both medians. A second table times the wrappers alone, around a
stub client whose methods return a pending future, without the SDK's own cost and noise.
Target (issue 11): overhead p50 <= 20 us per call.

    .venv/bin/python bench/tinker_overhead.py [--calls 2000] [--window 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TINKER_TELEMETRY", "0")

import tinker
from tinker import types

import lineage
from bench.common import percentile
from lineage.adapters.tinker import instrument
from lineage.adapters.tinker.fake_server import FakeTinkerServer
from lineage.adapters.tinker.instrument import instrument_training

TARGET_US = 20.0


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter_ns()
    value = call()
    return (time.perf_counter_ns() - start) / 1000.0, value


def paired(calls: int, window: int, plain: Callable[[], Any],
           instrumented: Callable[[], Any]) -> dict[str, list[float]]:
    """Time ``calls`` pairs, alternating the order; await each window's futures."""
    out: dict[str, list[float]] = {"plain": [], "instrumented": [], "diff": []}
    pending: list[Any] = []
    for i in range(calls):
        order = [("plain", plain), ("instrumented", instrumented)]
        if i % 2:
            order.reverse()
        times = {}
        for name, call in order:
            times[name], future = timed(call)
            pending.append(future)
        out["plain"].append(times["plain"])
        out["instrumented"].append(times["instrumented"])
        out["diff"].append(times["instrumented"] - times["plain"])
        if len(pending) >= 2 * window:
            for future in pending:
                future.result(timeout=60)
            pending.clear()
    for future in pending:
        future.result(timeout=60)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99), "mean": statistics.fmean(ordered)}


class _Stub:
    """A TrainingClient's public surface, each call returning a pending future."""

    model_id = "stub:train:0"

    def get_info(self) -> Any:
        return types.GetInfoResponse(model_id=self.model_id, is_lora=True, lora_rank=8,
                                     model_data=types.ModelData(arch="stub", model_name="stub"))

    def _pending(self, *args: Any, **kwargs: Any) -> Any:
        future: Future[Any] = Future()
        return type("F", (), {"future": lambda self: future})()

    forward_backward = forward_backward_custom = forward = optim_step = _pending
    save_state = save_weights_for_sampler = save_weights_external = _pending
    load_state = load_state_with_optimizer = _pending
    create_sampling_client = save_weights_and_get_sampling_client = _pending


def wrappers_alone(calls: int, recorder: Any, datum: Any) -> dict[str, dict[str, float]]:
    plain, wrapped = _Stub(), _Stub()
    instrument_training(wrapped, recorder, "fresh", None, {})
    adam = types.AdamParams(learning_rate=1e-4)
    results = {}
    for op, args in (("forward_backward", ([datum], "cross_entropy")), ("optim_step", (adam,))):
        base = [timed(lambda f=getattr(plain, op), a=args: f(*a))[0] for _ in range(calls)]
        inst = [timed(lambda f=getattr(wrapped, op), a=args: f(*a))[0] for _ in range(calls)]
        results[op] = {"plain_p50": percentile(sorted(base), 50),
                       "instrumented_p50": percentile(sorted(inst), 50),
                       "overhead_p50": percentile(sorted(inst), 50) - percentile(sorted(base), 50)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed pairs per operation")
    parser.add_argument("--window", type=int, default=50,
                        help="iterations between waits on the futures")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    datum = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
                        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0] * 4})
    adam = types.AdamParams(learning_rate=1e-4)
    prompt, params = types.ModelInput.from_ints([1, 2]), types.SamplingParams(max_tokens=4)
    with tempfile.TemporaryDirectory() as directory, FakeTinkerServer() as server, \
            lineage.Tracker(f"sqlite:///{directory}/bench.db") as tracker:
        plain_service = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fake")
        service = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fake")
        recorder = instrument(service, tracker, name="bench")
        plain = plain_service.create_lora_training_client("base", rank=8).result(timeout=60)
        inst = service.create_lora_training_client("base", rank=8).result(timeout=60)
        state = inst.save_weights_for_sampler("bench").result(timeout=60).path
        plain_sampler = plain_service.create_sampling_client(model_path=state).result(timeout=60)
        inst_sampler = service.create_sampling_client(model_path=state).result(timeout=60)
        figures = {
            "forward_backward": paired(args.calls, args.window,
                                       lambda: plain.forward_backward([datum], "cross_entropy"),
                                       lambda: inst.forward_backward([datum], "cross_entropy")),
            "optim_step": paired(args.calls, args.window, lambda: plain.optim_step(adam),
                                 lambda: inst.optim_step(adam)),
            "sample": paired(max(args.calls // 4, 10), args.window,
                             lambda: plain_sampler.sample(prompt, 1, params),
                             lambda: inst_sampler.sample(prompt, 1, params)),
        }
        alone = wrappers_alone(args.calls * 10, recorder, datum)
        recorder.flush(120)
        errors = recorder.errors
    report: dict[str, Any] = {"calls": args.calls, "recorder_errors": errors, "ops": {},
                              "wrappers_alone": alone}
    print(f"\nper call on the caller's thread, us ({args.calls} pairs; target: overhead p50 "
          f"<= {TARGET_US:g} us)")
    print(f"{'op':18} {'plain p50':>10} {'instr p50':>10} {'plain p90':>10} {'instr p90':>10} "
          f"{'overhead p50':>13} {'p90':>8}  target")
    for op, samples in figures.items():
        p, i, d = (summary(samples[k]) for k in ("plain", "instrumented", "diff"))
        report["ops"][op] = {"plain": p, "instrumented": i, "overhead": d}
        verdict = "met" if d["p50"] <= TARGET_US else "MISSED"
        print(f"{op:18} {p['p50']:10.1f} {i['p50']:10.1f} {p['p90']:10.1f} {i['p90']:10.1f} "
              f"{d['p50']:13.1f} {d['p90']:8.1f}  {verdict}")
    print(f"\nthe wrappers alone, around a stub client ({args.calls * 10} calls), us")
    for op, row in alone.items():
        print(f"{op:18} plain {row['plain_p50']:.2f}  instrumented {row['instrumented_p50']:.2f}"
              f"  overhead p50 {row['overhead_p50']:.2f}")
    print(f"\nrecorder errors: {errors}; load average at end: {os.getloadavg()}")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
