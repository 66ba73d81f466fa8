"""OpenLineage export through the openlineage-python client's HTTP transport to a loopback
server speaking Marquez's lineage endpoint (``POST /api/v1/lineage``): every event validates
against the bundled OpenLineage JSON Schema (and its facets' schemas), runs give START,
RUNNING, COMPLETE, FAIL and ABORT, a re-export gives identical events, and a consumer that
fails mid-way loses nothing (at least once, from the tracked position)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

from lineage.bootstrap import open_openlineage_exporter
from lineage.cli.main import main
from lineage.config.openlineage import OpenLineageSettings
from lineage.errors import ExportError
from tests.otlp_receiver import HttpReceiver, free_port
from tests.otlp_scenario import deterministic_tracker, record_scenario

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "openlineage"


class Marquez:
    """``POST /api/v1/lineage`` on loopback: keeps each JSON body, answers 201 (or a scripted
    failure)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[dict[str, Any]] = []
        self.fail_at: int | None = None  # the request number (1-based) that gets a 500
        self.requests = 0
        marquez = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                marquez.requests += 1
                if self.path != "/api/v1/lineage" or marquez.requests == marquez.fail_at:
                    self.send_response(404 if self.path != "/api/v1/lineage" else 500)
                else:
                    marquez.bodies.append(json.loads(body))
                    self.send_response(201)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def marquez() -> Iterator[Marquez]:
    server = Marquez()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def validate() -> Callable[[dict[str, Any]], None]:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry: Registry = Registry().with_resources(resources)
    core = json.loads((SCHEMAS / "OpenLineage.json").read_text())
    known = {uri for uri, _ in resources}

    def check(event: dict[str, Any]) -> None:
        Draft202012Validator(core, registry=registry,
                             format_checker=Draft202012Validator.FORMAT_CHECKER).validate(event)
        for facet in _facets(event):  # the spec's own facets against their own schemas
            if facet["_schemaURL"].split("#")[0] in known:
                Draft202012Validator({"$ref": facet["_schemaURL"]},
                                     registry=registry).validate(facet)

    return check


def _facets(event: dict[str, Any]) -> list[dict[str, Any]]:
    holders = [event["run"], event["job"], *event["inputs"], *event["outputs"]]
    return [facet for holder in holders for facet in holder.get("facets", {}).values()]


def recorded(tmp_path: Path, make_tracker: Callable[..., Any]) -> str:
    url = str(tmp_path / "lineage.db")
    tracker, clock = deterministic_tracker(url, make_tracker)
    scenario = record_scenario(tracker, clock)
    tracker.register_artifact("hf://org/sft-final", type="model", run=scenario.resumed_run,
                              checksum="sha256:" + "e" * 64)
    cancelled = tracker.start_run("stopped")
    clock.advance()
    cancelled.finish("cancelled").wait()
    tracker.close()
    return url


def export(url: str, marquez: Marquez, **options: Any) -> Any:
    settings = OpenLineageSettings.load({}, url=marquez.url)
    runner = open_openlineage_exporter(url, settings, retry={"total": 0}, **options)
    try:
        runner.export_to_head()
    finally:
        runner.store.close()
    return runner


def test_runs_become_valid_openlineage_events_and_a_re_export_is_identical(
        tmp_path: Path, make_tracker: Callable[..., Any], marquez: Marquez,
        validate: Callable[[dict[str, Any]], None]) -> None:
    url = recorded(tmp_path, make_tracker)
    runner = export(url, marquez)
    first = list(marquez.bodies)
    for event in first:
        validate(event)
    with pytest.raises(ValidationError):  # the schema is not vacuous
        validate({**first[0], "run": {"runId": "not-a-uuid"}})
    kinds = [(e["job"]["name"], e["eventType"]) for e in first]
    assert kinds.count(("sft", "START")) == 2 and ("stopped", "ABORT") in kinds
    assert [k for _, k in kinds].count("COMPLETE") == 1 and [k for _, k in kinds].count("FAIL") == 1
    assert any(k == "RUNNING" for _, k in kinds) and runner.stats.position > 0
    fail = next(e for e in first if e["eventType"] == "FAIL")
    assert fail["run"]["facets"]["errorMessage"]["message"].startswith("resumed as")
    complete = next(e for e in first if e["eventType"] == "COMPLETE")
    assert complete["run"]["facets"]["lineage_recovery"]["resumedFrom"] == fail["run"]["runId"]
    [checkpoint] = [o for o in complete["outputs"] if o["name"] == "ckpt-7"]
    assert checkpoint["namespace"] == "tinker://sft" and checkpoint["facets"]["version"][
        "datasetVersion"] == "b" * 64
    [data] = fail["inputs"]
    assert (data["namespace"], data["name"]) == ("s3://data", "train.jsonl")
    assert data["facets"]["lineage_artifact"]["size"] == 1234
    [model] = [e for e in first if e["eventType"] == "OTHER"]
    assert model["run"]["runId"] == complete["run"]["runId"]
    assert (model["outputs"][0]["namespace"], model["outputs"][0]["name"]) == ("hf://org",
                                                                               "sft-final")
    assert export(url, marquez).stats.events == 0  # nothing new after the position
    export(url, marquez, from_start=True)
    assert marquez.bodies[len(first):] == first  # deterministic: the same events again


def test_a_consumer_that_fails_midway_loses_nothing(
        tmp_path: Path, make_tracker: Callable[..., Any], marquez: Marquez) -> None:
    url = recorded(tmp_path, make_tracker)
    clean = Marquez()
    try:
        export(url, clean, name="clean")
    finally:
        clean.stop()
    marquez.fail_at = 4
    with pytest.raises(ExportError, match=r"^OpenLineage export to .*api/v1/lineage"):
        export(url, marquez)
    assert len(marquez.bodies) == 3
    export(url, marquez)  # from the tracked position: what was not delivered, at least once
    delivered = [json.dumps(b, sort_keys=True) for b in marquez.bodies]
    assert sorted(set(delivered)) == sorted({json.dumps(b, sort_keys=True) for b in clean.bodies})
    assert len(delivered) >= len(clean.bodies)


def test_a_tracker_exports_in_the_background_when_a_url_is_set(
        tmp_path: Path, make_tracker: Callable[..., Any], marquez: Marquez,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", marquez.url)
    monkeypatch.setenv("LINEAGE_OPENLINEAGE_POLL_S", "0.05")
    collector = HttpReceiver().start()  # and OTLP beside it: both exporters run and drain
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base)
    url = str(tmp_path / "bg.db")
    tracker = make_tracker(url)
    try:
        with tracker.start_run("background") as run:
            run.log_step(1, {"loss": 1.0})
        tracker.close()  # drains: waits for what it wrote to be emitted
        assert sorted(s.name for s in collector.spans()) == ["finish run", "train run",
                                                             "train steps"]
    finally:
        collector.stop()
    kinds = [e["eventType"] for e in marquez.bodies]
    assert kinds == ["START", "COMPLETE"] and marquez.bodies[0]["run"]["runId"] == str(run.id)
    again = Marquez()
    try:
        export(url, again, from_start=True)
        assert again.bodies == marquez.bodies  # the same events as the command's
    finally:
        again.stop()


def test_a_resumed_run_names_its_predecessor_and_root_in_the_parent_facet(
        tmp_path: Path, make_tracker: Callable[..., Any], marquez: Marquez,
        validate: Callable[[dict[str, Any]], None]) -> None:
    """A resumes into B, B into C: every event of B has A as parent and root, every event of
    C (from START) has B as parent and A as root, as LineageIR's parent/root trace ids; A's
    events have none, and its FAIL says which run superseded it."""
    url = str(tmp_path / "chain.db")
    tracker = make_tracker(url, export_otlp=False)
    chain = [tracker.start_run("sft")]
    for _ in range(2):
        run = chain[-1]
        run.log_step(1, {"loss": 1.0})
        checkpoint = run.save_checkpoint("s3://ckpt/" + run.id.hex, step=1,
                                         checksum="sha256:" + "c" * 64).wait()
        run.record_failure("backend_corrupted", "lost", corrupted=True, retryable=True).wait()
        chain.append(tracker.resume_run(run, checkpoint))
        run.finish("superseded", superseded_by=chain[-1].id).wait()
    chain[-1].finish("completed").wait()
    graph = tracker.trace(chain[2].id)["trace"]
    assert (graph["parent_trace_id"], graph["root_trace_id"]) == (str(chain[1].id), str(chain[0].id))
    tracker.close()
    export(url, marquez)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in marquez.bodies:
        validate(event)  # ParentRunFacet against its own schema too
        by_run.setdefault(event["run"]["runId"], []).append(event)
    first, second, third = (by_run[str(run.id)] for run in chain)
    assert all("parent" not in e["run"]["facets"] for e in first)
    for events, parent in ((second, chain[0]), (third, chain[1])):
        assert events[0]["eventType"] == "START"
        for event in events:
            facet = event["run"]["facets"]["parent"]
            assert facet["run"] == {"runId": str(parent.id)}
            assert facet["job"] == {"namespace": "lineage", "name": "sft"}
            assert facet["root"] == {"run": {"runId": str(chain[0].id)},
                                     "job": {"namespace": "lineage", "name": "sft"}}
    [fail] = [e for e in first if e["eventType"] == "FAIL"]
    assert fail["run"]["facets"]["lineage_recovery"]["supersededBy"] == str(chain[1].id)


def test_a_poisoned_event_is_skipped_and_recorded_and_the_export_goes_on(
        durable_url: str, make_tracker: Callable[..., Any], marquez: Marquez,
        validate: Callable[[dict[str, Any]], None], capsys: pytest.CaptureFixture[str]) -> None:
    """Over the hostile rows of ``test_quarantine`` (a payload that does not decode among
    them), the export reaches the head: the undecodable event is skipped, listed with its
    position and reason (as the OTLP exporter does; ``lineage export openlineage`` lists it
    too), and everything after it is delivered."""
    from lineage.adapters.background_export import BackgroundExporter
    from tests.integration.test_quarantine import record_with_poison

    tracker = make_tracker(durable_url, export_otlp=False)
    run, placed = record_with_poison(tracker)
    runner = open_openlineage_exporter(
        durable_url, OpenLineageSettings.load({}, url=marquez.url), retry={"total": 0})
    try:
        runner.export_to_head()
        assert runner.position == tracker.store.max_position()
        skipped = dict(runner.skipped)
        assert list(skipped) == [placed["garbage"]] and runner.stats.skipped == 1
        assert skipped[placed["garbage"]].startswith("MapperDeserialisationError")
        kinds = [e["eventType"] for e in marquez.bodies if e["run"]["runId"] == str(run.id)]
        assert kinds[0] == "START" and kinds[-1] == "COMPLETE"  # after the poison
        assert kinds.count("RUNNING") == 3  # the dataset, both checkpoints
        for event in marquez.bodies:
            validate(event)
        runner.export_to_head()  # nothing left, nothing skipped twice
        assert runner.stats.skipped == 1
        with pytest.raises(ExportError, match=f"^OpenLineage export .*position {placed['garbage']}"):
            BackgroundExporter(runner, strict=True).raise_if_strict()
    finally:
        runner.store.close()
    code = main(["--db", durable_url, "export", "openlineage", "--url", marquez.url,
                 "--name", "cli", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["position"] == runner.position
    assert [row["position"] for row in summary["skipped"]] == [placed["garbage"]]


def test_a_poisoned_event_in_a_runs_own_stream_leaves_its_later_events_going_out(
        tmp_path: Path, make_tracker: Callable[..., Any], marquez: Marquez,
        validate: Callable[[dict[str, Any]], None]) -> None:
    """Undecodable events inside a run's stream (a checkpoint, which makes an event of its
    own, and lost steps, which make none) are each recorded as skipped once, at their own
    positions, and the run's COMPLETE still goes out, with what could be read."""
    from eventsourcing.persistence import StoredEvent

    from lineage.codec.dispatch import topic_of
    from lineage.domain import Run
    from tests.integration.test_quarantine import _copy

    url = str(tmp_path / "lineage.db")
    tracker = make_tracker(url, export_otlp=False)
    run = tracker.start_run("poisoned-inside")
    run.save_checkpoint("tinker://inside/weights/step-10", step=10)
    with tracker.start_run("donor") as donor:
        pass
    tracker.close()
    runner = open_openlineage_exporter(url, OpenLineageSettings.load({}, url=marquez.url),
                                       retry={"total": 0})
    try:
        store = runner.store
        version = store.read_stream(run.id, desc=True, limit=1)[0].originator_version
        [finished] = [s for s in store.read_stream(donor.id) if s.topic == topic_of(Run.Finished)]
        poison = [StoredEvent(run.id, version + 1, topic_of(Run.CheckpointSaved), b"\x00no"),
                  StoredEvent(run.id, version + 2, topic_of(Run.StepsLost), b"\x00no"),
                  _copy(finished, originator_id=run.id, version=version + 3)]
        store.append(poison, [str(uuid4()) for _ in poison])
        placed = store.positions(run.id, [version + 1, version + 2])
        runner.export_to_head()
        assert runner.position == store.max_position()
        assert sorted(dict(runner.skipped)) == sorted(placed.values())
        assert runner.stats.skipped == 2
    finally:
        runner.store.close()
    mine = [e for e in marquez.bodies if e["run"]["runId"] == str(run.id)]
    assert [e["eventType"] for e in mine] == ["START", "RUNNING", "COMPLETE"]
    assert [o["name"] for o in mine[-1]["outputs"]] == ["weights/step-10"]
    for event in mine:
        validate(event)
