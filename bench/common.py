"""Shared helpers for the benchmarks: throwaway stores, percentiles, the report printer.

Benchmarks print figures and compare them with targets; they never assert on time (a shared
2-core machine is too noisy for that). Every store they open is temporary: a SQLite file in a
fresh temp directory, or a fresh PostgreSQL schema that is dropped (CASCADE) at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "LINEAGE_BENCH_POSTGRES_URL"

ROOT = Path(__file__).resolve().parent.parent


# -- stores ------------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as psycopg wants it (no query string)."""
    return url.split("?")[0].replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_base_url(given: str | None = None) -> str:
    return given or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL


def postgres_reachable(base_url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(libpq_url(base_url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def wants_postgres(args: argparse.Namespace, report: Any) -> bool:
    """``--postgres`` / ``--no-postgres`` as given; unset, run it when the server answers
    (and say so in the report when it does not)."""
    if args.postgres is not None:
        return bool(args.postgres)
    reachable = postgres_reachable(postgres_base_url(args.postgres_url))
    if not reachable:
        report.note("PostgreSQL not reachable: skipped (--postgres to insist)")
    return reachable


@contextmanager
def sqlite_store(directory: str | None = None, keep: bool = False) -> Iterator[str]:
    """Yields the path of a new SQLite file in a fresh temp directory (removed afterwards)."""
    folder = tempfile.mkdtemp(prefix="lineage_bench_", dir=directory)
    try:
        yield os.path.join(folder, "lineage.db")
    finally:
        if keep:
            print(f"# kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_schema(base_url: str) -> Iterator[tuple[str, str]]:
    """Yields (SQLAlchemy URL naming a fresh schema, schema name); drops the schema after."""
    import psycopg
    from psycopg import sql

    schema = f"lineage_bench_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}schema={schema}", schema
    finally:
        with psycopg.connect(libpq_url(base_url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@dataclass(frozen=True)
class Store:
    """One temporary store a benchmark runs on."""

    kind: str  # "sqlite" or "postgresql"
    url: str  # what a Tracker opens: the SQLite file's path, or a SQLAlchemy URL
    path: str | None  # the SQLite file; None on PostgreSQL
    schema: str  # the schema its tables are in ("main", SQLite's own name, on SQLite)


@contextmanager
def temp_store(kind: str, args: argparse.Namespace, report: Report,
               section: str | None = None) -> Iterator[Store]:
    """A fresh store of ``kind`` ("sqlite" or "postgresql") for the block, removed afterwards
    (``--keep`` keeps the SQLite file). Opens ``section`` in the report first when given; on
    PostgreSQL notes the schema's name."""
    if kind == "sqlite":
        with sqlite_store(args.dir, args.keep) as path:
            if section is not None:
                report.section(section)
            yield Store(kind, path, path, "main")
        return
    with postgres_schema(postgres_base_url(args.postgres_url)) as (url, schema):
        if section is not None:
            report.section(section)
        report.note(f"PostgreSQL schema {schema} (dropped afterwards)")
        yield Store(kind, url, None, schema)


def stores_wanted(args: argparse.Namespace, report: Report) -> list[str]:
    """The kinds of store a two-store benchmark runs on, in order: SQLite unless
    ``--no-sqlite``, then PostgreSQL as ``wants_postgres`` decides."""
    kinds = [] if args.no_sqlite else ["sqlite"]
    if wants_postgres(args, report):
        kinds.append("postgresql")
    return kinds


def single_store(args: argparse.Namespace) -> str:
    """The kind of store a one-store benchmark runs on: PostgreSQL with ``--postgres``."""
    return "postgresql" if args.postgres else "sqlite"


def open_tracker(url: str, args: argparse.Namespace) -> Any:
    """A Tracker on ``url`` with the queue/batch settings from the command line (None = default)."""
    from lineage import Tracker

    return Tracker(url, source="bench", actor="bench", tenant_id="bench",
                   queue_size=getattr(args, "queue_size", None),
                   batch_size=getattr(args, "batch_size", None),
                   batch_interval_s=getattr(args, "batch_interval", None))


@contextmanager
def read_models(url: str, store: Any, mapper: Any = None) -> Iterator[Any]:
    """The read models in ``url``, fed from ``store`` and not caught up (``mapper`` defaults to
    ``make_mapper()``); closed (their engine disposed) after the block."""
    from lineage.bootstrap import open_read_models
    from lineage.codec.mapper import make_mapper

    views = open_read_models(url, store, mapper or make_mapper(), catch_up=False)
    try:
        yield views
    finally:
        views.close()


def add_options(parser: argparse.ArgumentParser | Any, **options: tuple[Any, str]) -> None:
    """Adds ``--some-name`` options from ``some_name=(default, help)``: the value has the
    default's type and the help ends with the default; a ``False`` default makes a flag."""
    for name, (default, text) in options.items():
        flag = "--" + name.replace("_", "-")
        if default is False:
            parser.add_argument(flag, action="store_true", help=text)
        else:
            shown = f"{default:,}" if isinstance(default, int | float) else default
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{text} ({shown})")


def bench_parser(doc: str, *, postgres_default: bool | None, steps: int | None = None,
                 steps_help: str = "steps") -> argparse.ArgumentParser:
    """The command line of a benchmark on temp stores, described by the first paragraph of its
    module docstring ``doc``; ``steps``: the default of its ``--steps`` option (with
    ``steps_help``); the benchmark adds its own options (``add_options``).

    The store and Tracker options come in their own group. ``postgres_default`` None is a
    two-store benchmark (``stores_wanted``): PostgreSQL when reachable, and ``--no-sqlite`` to
    skip SQLite; True or False is a one-store benchmark (``single_store``).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="also print a JSON dump at the end")
    if steps is not None:
        add_options(parser, steps=(steps, steps_help))
    group = parser.add_argument_group("stores and tracker")
    if postgres_default is None:
        group.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    group.add_argument("--postgres", action=argparse.BooleanOptionalAction,
                       default=postgres_default,
                       help="also/only use PostgreSQL (default: "
                            + ("on when the server is reachable" if postgres_default is None
                               else "on" if postgres_default else "off") + ")")
    group.add_argument("--postgres-url", default=None,
                       help=f"base SQLAlchemy URL (default ${POSTGRES_ENV} or "
                            f"{DEFAULT_POSTGRES_URL}); a fresh schema is created and dropped")
    group.add_argument("--dir", default=None, help="where to create the temp SQLite directory")
    group.add_argument("--keep", action="store_true", help="keep the SQLite file")
    group.add_argument("--queue-size", type=int, default=None, help="Tracker queue_size")
    group.add_argument("--batch-size", type=int, default=None, help="Tracker batch_size")
    group.add_argument("--batch-interval", type=float, default=None,
                       help="Tracker batch_interval_s")
    return parser


def writer_stats(tracker: Any) -> dict[str, int]:
    return dict(asdict(tracker.writer.stats))


def stats_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


def print_writer_stats(report: Report, stats: dict[str, int], over: str,
                       steps: int | None = None) -> None:
    """The writer's batching figures from a ``stats_delta`` taken ``over`` (e.g. "the run");
    ``steps``: the steps logged meanwhile (each batch stores a run's steps as one block)."""
    batches = stats["committed_batches"] or 1
    report.figure("writer batches", stats["committed_batches"], "", fmt="{:,}")
    if steps is not None:
        report.figure("avg steps per batch", steps / batches, "steps", fmt="{:,.0f}")
    report.figure("avg ids per batch", stats["committed_events"] / batches, "",
                  note="event ids held unique: one per block, command or caller-given id")
    report.note(f"writer stats (delta over {over}): {stats}")


def disk_usage(store: Store) -> dict[str, Any]:
    """The store's bytes on disk: ``total``, ``tables`` (name -> bytes, indexes and TOAST
    counted with their table) and ``how`` they were measured.

    SQLite: the WAL is checkpointed into the file first (``wal_checkpoint(TRUNCATE)``), then
    total = file + WAL; per table from ``dbstat`` (an index counts with its table). PostgreSQL:
    ``pg_total_relation_size`` of each table in the schema (heap, TOAST, indexes, maps)."""
    if store.kind == "sqlite":
        import sqlite3

        path = store.path or store.url
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = {name: table for name, table in conn.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")}
            tables: dict[str, int] = {}
            try:
                for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                    table = owner.get(name, name)
                    tables[table] = tables.get(table, 0) + size
            except sqlite3.OperationalError:  # built without dbstat
                tables = {}
        total = sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
                    if os.path.exists(path + suffix))
        return {"total": total, "tables": tables,
                "how": "file + WAL after wal_checkpoint(TRUNCATE)"}
    import psycopg

    with psycopg.connect(libpq_url(store.url)) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')", (store.schema,)).fetchall()
    tables = {name: int(size) for name, size in rows}
    return {"total": sum(tables.values()), "tables": tables,
            "how": "pg_total_relation_size summed over the schema's tables"}


# -- workload ----------------------------------------------------------------------------------


def metric_series(count: int, seed: int = 1) -> list[dict[str, float]]:
    """``count`` realistic metric dicts (full-precision floats, like a real loss curve).

    Prebuilt so the benchmark loop measures the tracker, not random number generation.
    Reused cyclically for longer runs.
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        progress = i / max(count, 1)
        out.append({
            "loss": 2.5 * math.exp(-3 * progress) + rng.random() * 0.05,
            "lr": 3e-4 * 0.5 * (1 + math.cos(math.pi * progress)),
            "grad_norm": 0.5 + rng.random(),
        })
    return out


# -- figures -----------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (p in 0..100)."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} x{os.cpu_count()} cpu",
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": commit,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


@dataclass
class Report:
    """Figures printed as plain ``name: value unit  [target ...: met/MISSED]`` lines."""

    title: str
    env: dict[str, Any] = field(default_factory=environment)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    _current: str = "main"

    @classmethod
    def start(cls, title: str) -> Report:
        """A new report, its header (title and environment) printed."""
        report = cls(title)
        report.header()
        return report

    def header(self) -> None:
        print(f"== {self.title}")
        print("# " + "  ".join(f"{k}={v}" for k, v in self.env.items()))

    def section(self, name: str) -> None:
        self._current = name
        self.sections.setdefault(name, {})
        print(f"-- {name}")

    def figure(self, name: str, value: Any, unit: str = "", *, fmt: str = "{:,.1f}",
               target: tuple[str, float] | None = None, note: str = "") -> None:
        """Record and print one figure. ``target`` is (op, bound) with op in '<=', '>=', '<'."""
        self.sections.setdefault(self._current, {})[name] = value
        shown = fmt.format(value) if isinstance(value, int | float) else str(value)
        line = f"{name:<28} {shown:>14} {unit}".rstrip()
        if target is not None:
            op, bound = target
            met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound,
                   ">": value > bound}[op]
            unit_suffix = f" {unit}" if unit else ""
            line += f"   target {op} {fmt.format(bound)}{unit_suffix}: {'met' if met else 'MISSED'}"
            self.targets.append({"section": self._current, "figure": name, "value": value,
                                 "op": op, "bound": bound, "unit": unit, "met": bool(met)})
        if note:
            line += f"   ({note})"
        print(line, flush=True)

    def note(self, text: str) -> None:
        self.sections.setdefault(self._current, {}).setdefault("notes", []).append(text)
        print(f"   {text}", flush=True)

    def finish(self, as_json: bool) -> None:
        self.env["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.env["peak_rss_mb"] = round(peak_rss_mb(), 1)
        missed = [t for t in self.targets if not t["met"]]
        print(f"# loadavg_end={self.env['loadavg_end']}  peak_rss={self.env['peak_rss_mb']} MB")
        print(f"targets: {len(self.targets) - len(missed)}/{len(self.targets)} met"
              + (": missed " + ", ".join(f"{t['section']}/{t['figure']}" for t in missed)
                 if missed else ""))
        if as_json:
            print(json.dumps({"title": self.title, "env": self.env, "sections": self.sections,
                              "targets": self.targets}, indent=2, default=str))


# -- profiling ---------------------------------------------------------------------------------


def add_writer_profile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the writer thread and print its top costs")


@contextmanager
def writer_profile(report: Report, enabled: bool, top: int = 25) -> Iterator[None]:
    """cProfile the writer thread of trackers opened inside the block; print the top costs.

    Says in the report that the rates are not comparable with the targets. Patches
    ``Writer._run`` in this process only (no file changes): the thread enables a
    cProfile.Profile on itself and disables it when it exits (at ``tracker.close()``).
    """
    if not enabled:
        yield
        return
    report.note("cProfile is on for the writer thread: rates drop (~2x); "
                "do not compare them with the targets")
    import cProfile
    import pstats

    from lineage.application.writer import Writer

    profile = cProfile.Profile()
    original = Writer._run

    def profiled_run(self: Any) -> None:
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    Writer._run = profiled_run  # type: ignore[method-assign]
    try:
        yield
    finally:
        Writer._run = original  # type: ignore[method-assign]
        stats = pstats.Stats(profile)
        for key in ("tottime", "cumulative"):
            print(f"# writer thread profile, top {top} by {key}")
            stats.sort_stats(key).print_stats(top)
