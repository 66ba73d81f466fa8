"""Lineage query latency: the ancestors of the end of a 1,000-deep chain in a 1M-artifact registry.

The registry is BULK-LOADED: rows go straight into the read-model tables ``lineage_artifacts``
and ``lineage_edges`` (executemany on SQLite, COPY on PostgreSQL, in chunks), shaped like the
rows ``projections/registry.py`` and ``projections/edges.py`` write, because recording a
million artifacts through the event store would take far too long. ``--artifacts`` (1,000,000)
artifacts with random ids in registration order; a derivation chain of ``--depth`` (1,000)
``derived_from`` edges among them, at random positions; every other artifact derives from 1-2
random earlier ones. Secondary indexes are dropped during the load and created again after it
(the same definitions), then ANALYZE runs.

Then it times ``ReadModels.lineage(end_of_chain, direction="up", depth=1000)`` (the full call:
the recursive walk plus describing each node and collecting the edges) ``--repeat`` (20) times
after one untimed warm-up, and the recursive walk SQL alone, and prints the walk's query plan
(EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL) to show which index it uses.

Target: p50 <= 50 ms on both.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from common import Report, bench_parser, percentile, read_models, stores_wanted, temp_store

P50_TARGET_MS = 50.0
CHUNK = 50_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


# -- the registry ------------------------------------------------------------------------------


class Registry:
    """Ids in registration order, the chain's indexes, and each artifact's parents."""

    def __init__(self, artifacts: int, depth: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(artifacts)]
        self.chain = sorted(rng.sample(range(artifacts), depth + 1))
        self.rng = rng

    def parents(self) -> Iterator[tuple[int, int]]:
        """(parent index, child index) for every derived_from edge, in child order."""
        previous = {child: parent for parent, child in zip(self.chain, self.chain[1:], strict=False)}
        chained = set(self.chain)
        for child in range(1, len(self.ids)):
            if child in previous:
                yield previous[child], child
            elif child not in chained:
                for parent in {self.rng.randrange(child) for _ in range(self.rng.randint(1, 2))}:
                    yield parent, child

    @property
    def end(self) -> str:
        return self.ids[self.chain[-1]]


def artifact_rows(registry: Registry) -> Iterator[tuple[Any, ...]]:
    """Rows in ``lineage_artifacts`` column order, as RegistryProjection writes them."""
    for index, artifact_id in enumerate(registry.ids):
        at = (EPOCH + timedelta(milliseconds=index)).isoformat(timespec="microseconds")
        yield (artifact_id, "bench", "checkpoint", f"tinker://bench/weights/{index}", None,
               1 << 30, "sha256", f"{index:064x}", "safetensors", None, index, True, "live",
               None, None, "{}", None, "{}", at, "bench", index + 1)


def edge_rows(registry: Registry) -> Iterator[tuple[Any, ...]]:
    """Rows in ``lineage_edges`` column order, as EdgeProjection writes derived_from edges."""
    from lineage.projections.edges import edge_id

    ids = registry.ids
    for parent, child in registry.parents():
        source, target = ids[parent], ids[child]
        yield (edge_id(source, target, "derived_from"), None, "artifact", source, "artifact",
               target, "derived_from", source, "artifact", target, "artifact", "{}", child + 1)


# -- bulk loading ------------------------------------------------------------------------------


def chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load(engine: Any, table: Any, rows: Iterator[tuple[Any, ...]]) -> int:
    """Insert ``rows`` (tuples in column order) into ``table``, one transaction per chunk."""
    columns = ", ".join(column.name for column in table.columns)
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            return _copy(raw.driver_connection, table.name, columns, rows)
        return _executemany(raw.driver_connection, table.name, columns, len(table.columns), rows)
    finally:
        raw.close()


def _executemany(conn: Any, name: str, columns: str, width: int,
                 rows: Iterator[tuple[Any, ...]]) -> int:
    statement = f"INSERT INTO {name} ({columns}) VALUES ({', '.join('?' * width)})"
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading, then back as it was
    count = 0
    for chunk in chunks(rows):
        conn.execute("BEGIN")
        conn.executemany(statement, chunk)
        conn.execute("COMMIT")
        count += len(chunk)
    conn.execute(f"PRAGMA cache_size={cache}")
    return count


def _copy(conn: Any, name: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> int:
    count = 0
    for chunk in chunks(rows):
        with conn.cursor() as cursor, cursor.copy(f"COPY {name} ({columns}) FROM STDIN") as copy:
            for row in chunk:
                copy.write_row(row)
        conn.commit()
        count += len(chunk)
    return count


@contextmanager
def indexes_built_after(engine: Any, tables: list[Any]) -> Iterator[None]:
    """Drop the secondary indexes, load, then create them again (same definitions)."""
    indexes = [index for table in tables for index in table.indexes]
    for index in indexes:
        index.drop(engine)
    yield
    for index in indexes:
        index.create(engine)


def bulk_load(report: Report, engine: Any, registry: Registry) -> None:
    from sqlalchemy import text

    from lineage.projections.tables import artifacts, edges

    start = time.perf_counter()
    with indexes_built_after(engine, [artifacts, edges]):
        loaded = load(engine, artifacts, artifact_rows(registry))
        linked = load(engine, edges, edge_rows(registry))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    report.figure("artifacts (bulk-loaded)", loaded, "", fmt="{:,}",
                  note="rows inserted directly into lineage_artifacts, not via the event store")
    report.figure("edges (bulk-loaded)", linked, "", fmt="{:,}",
                  note=f"derived_from; chain of {len(registry.chain) - 1:,} edges + random DAG")
    report.figure("load + index + ANALYZE", time.perf_counter() - start, "s")


# -- timing ------------------------------------------------------------------------------------


def timings_ms(call: Callable[[], Any], repeat: int) -> list[float]:
    call()  # warm-up: caches, prepared plans
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return sorted(out)


def print_latency(report: Report, label: str, times: list[float], target: bool) -> None:
    report.figure(f"{label} p50", percentile(times, 50), "ms", fmt="{:,.2f}",
                  target=("<=", P50_TARGET_MS) if target else None)
    report.figure(f"{label} p90", percentile(times, 90), "ms", fmt="{:,.2f}")
    report.figure(f"{label} max", times[-1], "ms", fmt="{:,.2f}")


def walk(engine: Any, start: str, depth: int) -> Callable[[], list[Any]]:
    """The recursive ancestors walk alone, exactly the SQL ``ReadModels.lineage`` sends."""
    from sqlalchemy import text

    from lineage.projections.lineage_walk import _WALK

    statement = text(_WALK["up"][engine.dialect.name == "postgresql"])

    def run() -> list[Any]:
        with engine.connect() as conn:
            return conn.execute(statement, {"start": start, "depth": depth}).all()

    return run


def explain(engine: Any, start: str, depth: int) -> None:
    from sqlalchemy import text

    from lineage.projections.lineage_walk import _WALK

    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.execute(text(prefix + _WALK["up"][postgres]), {"start": start, "depth": depth})
        print("# query plan of the recursive walk (up):")
        for row in rows:
            print("#   " + (row[0] if postgres else f"{row[1]:>3} {row[2]:>3}  {row[3]}"))


def measure(report: Report, url: str, args: argparse.Namespace) -> None:
    from lineage.bootstrap import open_store

    store = open_store(url)
    try:
        with read_models(url, store) as views:
            query_registry(report, views, args)
    finally:
        store.close()


def query_registry(report: Report, views: Any, args: argparse.Namespace) -> None:
    """Bulk-load the registry into ``views``' tables, then time and explain the ancestors query."""
    # The read models create (or rebuild) their tables with their runner: build it before the
    # load, or it would find no layout version later and drop the loaded rows.
    views.runner.status()
    registry = Registry(args.artifacts, args.depth)
    bulk_load(report, views.engine, registry)
    end = registry.end
    graph = views.lineage(end, direction="up", depth=args.depth)
    report.figure("ancestors found", len(graph["nodes"]) - 1, "", fmt="{:,}",
                  note=f"expected {args.depth:,}; {len(graph['edges']):,} edges returned")
    query = functools.partial(views.lineage, end, direction="up", depth=args.depth)
    print_latency(report, "lineage() up", timings_ms(query, args.repeat), target=True)
    print_latency(report, "  walk SQL only", timings_ms(walk(views.engine, end, args.depth),
                                                         args.repeat), target=False)
    explain(views.engine, end, args.depth)


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None)
    parser.add_argument("--artifacts", type=int, default=1_000_000, help="registry size (1,000,000)")
    parser.add_argument("--depth", type=int, default=1_000, help="chain length in edges (1,000)")
    parser.add_argument("--repeat", type=int, default=20, help="timed queries (20)")
    args = parser.parse_args()

    report = Report.start("bench/lineage_query.py: ancestors of a 1,000-deep chain (bulk-loaded registry)")
    for kind in stores_wanted(args, report):
        with temp_store(kind, args, report, section=kind) as store:
            measure(report, store.url, args)
    report.finish(args.json)


if __name__ == "__main__":
    main()
