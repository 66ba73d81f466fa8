"""Property: random sequences of public API calls with hostile values never break the tracker.

Each call raises a ``LineageError`` and stores nothing, or is stored (``api_driver.Driver``).
Afterwards every read model query answers, in Python and through the CLI (``runs``, ``runs
show``, ``artifacts``, ``trace``, ``audit``, all ``--json``), and agrees with what was stored;
``lineage project rebuild`` then gives the same answers. Any other exception is a failure.

On a real SQLite file (the default store) and, shorter, on PostgreSQL. Run with ``-s`` to see
the figures (examples, calls, refusals by error); ``LINEAGE_FUZZ_EXAMPLES`` sets the SQLite
example count (default 30, and an eighth of that on PostgreSQL: about a minute in all on a
2-core machine).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import lineage
from lineage.cli.main import main
from tests.conftest import POSTGRES_ENV, _libpq_url
from tests.faults import hostile as h
from tests.faults.api_driver import FRESH, LOCAL, QUERIES, Driver, same_numbers

EXAMPLES = int(os.environ.get("LINEAGE_FUZZ_EXAMPLES", "30"))


Arg = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any] | None]  # (good, hostile or None)


def op(kind: str, *args: Arg) -> st.SearchStrategy[tuple[Any, ...]]:
    """A call of ``kind``: half the time every argument is good (so runs start and sequences
    go deep), a quarter one argument is hostile (every rule is hit on its own), a quarter each
    argument may be hostile."""
    goods = [good for good, _ in args]
    singles = [st.tuples(st.just(kind), *goods[:i], bad, *goods[i + 1:])
               for i, (_, bad) in enumerate(args) if bad is not None]
    mixed = [good if bad is None else st.one_of(good, bad) for good, bad in args]
    good_call = st.tuples(st.just(kind), *goods)
    return st.one_of(good_call, good_call, st.one_of(*singles), st.tuples(st.just(kind), *mixed))


run = (st.integers(0, 7), None)
artifact = (st.integers(0, 9), None)
uri = (st.just(LOCAL) | st.sampled_from(["s3://b/k1", "tinker://s/w/1", "hf://org/m"]), h.uris)
flag = (st.booleans(), st.sampled_from([None, 1, "no"]))
name = (h.good_names, h.names)
maybe_name = (st.none() | h.good_names, h.names)
step = (st.integers(0, 60), h.steps)
maybe_step = (st.none() | st.integers(0, 60), h.steps)
time = (st.none(), h.times)
metrics = (st.dictionaries(h.good_names, st.floats(), max_size=3), h.metric_maps)
durations = (st.none() | st.just({"step_s": 0.25}), h.metric_maps)
metadata = (st.none() | st.just({"k": [1, "v"]}), h.metadata)
job = (st.none() | st.just({"model": "m", "learning": {"learning_rate": 1e-4}}), h.job_specs)
tags = (st.none() | st.just({"team": "a"}), h.tag_maps)
text = (st.just("boom"), h.free_text)
maybe_text = (st.none(), h.free_text)

START = op("start", name, job, tags, (st.just(0), h.steps), time)
FIRST = st.tuples(st.just("start"), h.good_names, st.none() | st.just({"model": "m"}), st.none(),
                  st.just(0), st.none())
STEP = op("step", run, step, metrics, maybe_step, durations, maybe_step, time,
          (st.none() | st.just(FRESH), h.event_ids))
OPERATIONS = st.tuples(FIRST, st.lists(st.one_of(
    STEP, STEP, STEP, START,
    op("eval", run, step, metrics, maybe_name, maybe_name, time),
    op("failure", run, name, text, name, flag, maybe_step),
    op("finish", run, (st.sampled_from(["completed", "failed", "cancelled"]),
                       st.sampled_from(["done", 1, None])), maybe_text),
    op("register", uri, (st.sampled_from(["checkpoint", "model", "dataset", "log"]),
                         st.sampled_from(["weights", None, 3])),
       maybe_name, (st.none(), h.sizes), (st.none(), h.checksums), metadata,
       (st.lists(st.integers(0, 9), max_size=2), None),
       (st.none() | st.integers(0, 7), st.just("not-a-run")), maybe_step),
    op("checkpoint", run, uri, step, (st.sampled_from([None, "safetensors", "gguf"]),
                                      st.sampled_from(["pickle", ""])), metadata),
    op("alias", artifact, name, (st.just("registry"), st.sampled_from(["run-1", "", "\x00"])),
       flag),
    op("input", run, artifact, maybe_name),
    st.tuples(st.just("query"), st.sampled_from(QUERIES), run[0],
              st.one_of(h.names, h.times, st.sampled_from(["running", "model", "up", "both"])),
              st.one_of(st.none(), h.steps)),
    op("recover", run, (st.sampled_from(["latest", "best"]), st.sampled_from(["bogus", 3])),
       maybe_name),
), min_size=8, max_size=30)).map(lambda ops: [ops[0], *ops[1]])

FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    yield
    if FIGURES:
        print("\napi fuzz figures:")
        for key, count in sorted(FIGURES.items()):
            print(f"  {count:6d}  {key}")


def exercise(url: str, folder: Path, operations: list[tuple[Any, ...]]) -> None:
    """Apply the operations, check every answer, rebuild, check the answers are the same."""
    FIGURES["examples"] += 1
    with lineage.Tracker(url, export_otlp=False) as tracker:
        driver = Driver(tracker, folder, FIGURES)
        for operation in operations:
            driver.apply(operation)
        tracker.flush()  # nothing accepted may be lost: a WriterError here is a failure
        check_python(tracker, driver)
    before = cli_answers(url)
    assert_cli_agrees(before, driver)
    out = cli(url, "project", "rebuild")
    assert "rebuilt" in out
    assert cli_answers(url) == before, "lineage project rebuild gave other read models"


def check_python(tracker: lineage.Tracker, driver: Driver) -> None:
    views = {view.id: view for view in tracker.runs()}
    known = {model.handle.id for model in driver.runs}
    assert known <= views.keys()
    for extra in views.keys() - known:  # runs a recovery started
        assert views[extra].resumed_from is not None or views[extra].name
    for model in driver.runs:
        view = tracker.run(model.handle.id)
        assert (view.name, view.tags) == (model.name, model.tags)
        stored = [(s.step, s.metrics) for s in tracker.steps(model.handle.id)]
        assert [s for s, _ in stored] == [s for s, _ in model.steps]
        assert all(same_numbers(a, b) for (_, a), (_, b) in zip(stored, model.steps, strict=True))
        assert view.steps == len(model.steps)
        if not model.recovered:
            assert (view.status, view.evaluations, view.failures) == (
                model.status, model.evaluations, model.failures)
        for shape in ("lineageir", "nested"):
            json.dumps(tracker.trace(model.handle.id, format=shape))
        tracker.run_history(model.handle.id, steps=2)
    artifacts = {view.id: view for view in tracker.artifacts(limit=10_000)}
    assert artifacts.keys() == driver.artifacts.keys()
    for artifact_id, model in driver.artifacts.items():
        view = artifacts[artifact_id]
        assert (view.uri, view.type, view.size) == (model.uri, model.type, model.size)
        assert model.checksum is None or model.checksum.endswith(view.checksum or "?")
        tracker.lineage(artifact_id, direction="both")
    audit = tracker.audit(include_steps=True, limit=10_000)
    logged = list(tracker.store.read_log(1, 10_000))
    blocks = [tracker.blocks.decode(row) for row in logged if tracker.blocks.is_step(row.topic)]
    assert [row["event_id"] for row in audit if row["kind"] == "run.step_recorded"] == [
        str(block.step_id(i)) for block in blocks for i in range(block.count)]
    assert len(audit) == len(logged) - len(blocks) + sum(block.count for block in blocks)


def cli(url: str, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--db", url, *argv])
    assert code == 0 and "Traceback" not in err.getvalue(), (argv, code, err.getvalue())
    return out.getvalue()


def cli_answers(url: str) -> dict[str, Any]:
    """What the read-model commands print as JSON (parsed), by command."""
    answers: dict[str, Any] = {
        "runs": json.loads(cli(url, "runs", "--all", "--json")),
        "artifacts": json.loads(cli(url, "artifacts", "--limit", "10000", "--json")),
        "audit": json.loads(cli(url, "audit", "--steps", "--limit", "10000", "--json")),
    }
    for run in answers["runs"][:3]:  # each command opens the store: keep the example short
        answers[f"show {run['id']}"] = json.loads(cli(url, "runs", "show", run["id"], "--json"))
        answers[f"trace {run['id']}"] = json.loads(cli(url, "trace", run["id"], "--json"))
    return answers


def assert_cli_agrees(answers: dict[str, Any], driver: Driver) -> None:
    run_ids = {run["id"] for run in answers["runs"]}
    assert {str(model.handle.id) for model in driver.runs} <= run_ids
    assert {a["id"] for a in answers["artifacts"]} == {str(i) for i in driver.artifacts}
    for model in driver.runs:
        shown = answers.get(f"show {model.handle.id}")
        assert shown is None or str(model.handle.id) in json.dumps(shown)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(operations=OPERATIONS)
def test_hostile_api_calls_on_sqlite(operations: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="lineage-fuzz-") as folder:
        exercise(str(Path(folder) / "lineage.db"), Path(folder), operations)


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL to a new schema on the test server, dropped afterwards (see tests/conftest.py)."""
    schema = f"lineage_fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_url(base.split("?")[0]), autocommit=True,
                         connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.postgres
def test_hostile_api_calls_on_postgres(postgres_url: str) -> None:
    base = os.environ[POSTGRES_ENV]

    @settings(max_examples=max(EXAMPLES // 8, 3), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(operations=OPERATIONS)
    def on_postgres(operations: list[tuple[Any, ...]]) -> None:
        with fresh_schema(base) as url, tempfile.TemporaryDirectory() as folder:
            exercise(url, Path(folder), operations)

    on_postgres()
