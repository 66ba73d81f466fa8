"""Hostile input through the HTTP API: every answer is a 4xx naming what is wrong, never a
5xx, and nothing is stored; a uri a client sends is data the server never opens or fetches."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import threading
import uuid
from array import array
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.server.conftest import InProcessServer

NOW = datetime.now(UTC).isoformat()
RUN = str(uuid.uuid4())


def call(op: str, *args: Any, run: str | None = None, event_id: str | None = None,
         loc: Any = None, **kwargs: Any) -> dict[str, Any]:
    return {"t": "c", "op": op, "run": run, "args": list(args), "kwargs": kwargs,
            "id": event_id or uuid.uuid4().hex, "at": NOW, "loc": loc or {}}


def steps(run: str, *rows: list[Any]) -> dict[str, Any]:
    return {"t": "s", "run": run, "ids": uuid.uuid4().hex, "rows": list(rows)}


def row(step: Any = 1, metrics: Any = None, **changes: Any) -> list[Any]:
    values = [step, {"loss": 0.5} if metrics is None else metrics, None, None, None, None,
              1_700_000_000_000_000_000, None, uuid.uuid4().hex]
    for index, value in changes.items():
        values[int(index[1:])] = value
    return values


def columns(**changes: Any) -> dict[str, Any]:
    """A step item of binary columns (lineage.remote.columns), with ``changes``."""
    item = {"t": "b", "run": RUN, "ids": uuid.uuid4().hex, "count": 2,
            "steps": packed("q", [1, 2]), "ns": packed("q", [1_700_000_000_000_000_000] * 2),
            "epochs": None, "names": ["loss"], "kinds": "d",
            "values": [packed("d", [0.5, 0.25])]}
    return {**item, **changes}


def packed(code: str, values: list[Any]) -> str:
    return base64.b64encode(array(code, values).tobytes()).decode()


def nested_metadata(depth: int) -> bytes:
    """A register_artifact call whose metadata is ``depth`` objects deep (JSON text: too deep
    for json.dumps to write)."""
    item = json.dumps(call("register_artifact", "s3://b/k", type="model", metadata="HOLE"))
    deep = '{"a": ' * depth + "1" + "}" * depth
    return b'{"items": [' + item.replace('"HOLE"', deep).encode() + b"]}"


def body(items: list[Any]) -> bytes:
    return json.dumps({"items": items}).encode()


BOMB = gzip.compress(b'{"items": [' + b" " * (6 << 20) + b"]}")

CASES: dict[str, tuple[bytes, dict[str, str]]] = {
    "malformed json": (b'{"items": [', {}),
    "not an object": (b"[1, 2]", {}),
    "truncated gzip": (gzip.compress(body([call("start_run", "x")]))[:40],
                       {"content-encoding": "gzip"}),
    "not gzip at all": (b"plain text", {"content-encoding": "gzip"}),
    "unknown encoding": (body([]), {"content-encoding": "br"}),
    "gzip bomb": (BOMB, {"content-encoding": "gzip"}),
    "huge body": (b'{"items": ["' + b"x" * (2 << 20) + b'"]}', {}),
    "deep nesting": (b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
    "items not a list": (b'{"items": {"t": "s"}}', {}),
    "unknown item kind": (body([{"t": "x"}]), {}),
    "unknown operation": (body([call("__class__")]), {}),
    "private argument": (body([call("start_run", "x", _starter=1)]), {}),
    "event id chosen in kwargs": (body([call("start_run", "x", event_id="1", wait=False)]), {}),
    "event id not a uuid": (body([call("start_run", "x", event_id="../../etc")]), {}),
    "step row too short": (body([steps(RUN, [1, {}])]), {}),
    "step time not a number": (body([steps(RUN, row(s6="soon"))]), {}),
    "run id not a uuid": (body([steps("'; DROP TABLE stored_events;--", row())]), {}),
    "steps of a run that does not exist": (body([steps(RUN, row())]), {}),
    "name too long": (body([call("start_run", "n" * 100_000)]), {}),
    "name with NUL": (body([call("start_run", "a\x00b")]), {}),
    "wrong argument type": (body([call("start_run", ["not", "a", "name"])]), {}),
    "unknown argument": (body([call("start_run", "x", colour="red")]), {}),
    "metadata nested deep": (nested_metadata(5000), {}),
    "path traversal": (body([call("register_artifact", "../../../../etc/passwd",
                                  type="dataset")]), {}),
    "file uri of the server": (body([call("register_artifact", "file:///etc/passwd",
                                          type="dataset")]), {}),
    "file uri declared with a bad digest": (body([call(
        "register_artifact", "file:///etc/passwd", type="dataset",
        loc={"file:///etc/passwd": [10, "sha256:nothex"]})]), {}),
    "declared location not a file uri": (body([call(
        "register_artifact", "s3://b/k", type="model", loc={"http://169.254.169.254/": [1,
                                                              "sha256:" + "0" * 64]})]), {}),
    "step columns of different lengths": (body([columns(ns=packed("q", [1]))]), {}),
    "step column not base64": (body([columns(steps="!!!!" * 4)]), {}),
    "step count not a number": (body([columns(count=True)]), {}),
    "step count past the limit": (body([columns(count=10**9)]), {}),
    "negative step in columns": (body([columns(steps=packed("q", [1, -5]))]), {}),
    "metric column of text": (body([columns(values=["0.25"])]), {}),
    "metric kind unknown": (body([columns(kinds="s")]), {}),
    "metric name with NUL": (body([columns(names=["lo\x00ss"])]), {}),
    "metric names repeated": (body([columns(names=["loss", "loss"], kinds="dd",
                                            values=[packed("d", [0.5, 0.5])] * 2)]), {}),
    "step time zero in columns": (body([columns(ns=packed("q", [0, 1]))]), {}),
    "epoch below -1 in columns": (body([columns(epochs=packed("q", [-2, 1]))]), {}),
    "retry flag not a bool": (b'{"retry": "yes", "items": []}', {}),
    "cloud metadata uri": (body([call("register_artifact",
                                      "http://169.254.169.254/latest/meta-data/iam/",
                                      type="model")]), {}),
    "cloud metadata uri spelt as one number": (body([call(
        "register_artifact", "http://2852039166/latest/meta-data/", type="model")]), {}),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_batches_get_a_clear_4xx_and_store_nothing(shared_server: InProcessServer,
                                                           case: str) -> None:
    token = shared_server.token(f"h-{uuid.uuid4().hex[:10]}", "mallory", ("read", "write"))
    content, headers = CASES[case]
    response = shared_server.http.post("/v1/batches", content=content, timeout=60,
                          headers={"Authorization": f"Bearer {token}", **headers})
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    answer = response.json()
    assert answer.get("detail") or answer.get("results"), answer
    if "results" in answer:  # shape accepted, every item refused by the application layer
        assert all(not result["ok"] and result["error"]["message"] for result in answer["results"])
    auth = {"Authorization": f"Bearer {token}"}
    assert shared_server.http.get("/v1/audit", headers=auth).json() == []
    assert shared_server.http.get("/v1/runs", headers=auth).json() == []


@pytest.mark.parametrize("query", ["/v1/runs?status=' OR 1=1--", "/v1/runs?limit=abc",
                                   "/v1/runs?limit=-1", "/v1/artifacts?type=%00",
                                   "/v1/runs/..%2F..%2Fetc%2Fpasswd", "/v1/runs/not-a-uuid/trace",
                                   "/v1/lineage/x?depth=100000", "/v1/ids?prefix=zz",
                                   "/v1/audit?subject=1;DROP", "/v1/runs?offset=1e400"])
def test_hostile_queries_get_a_clear_4xx(shared_server: InProcessServer, query: str) -> None:
    token = shared_server.token(f"q-{uuid.uuid4().hex[:10]}", "mallory", ("read",))
    response = shared_server.http.get(f"{query}", headers={"Authorization": f"Bearer {token}"})
    assert 400 <= response.status_code < 500, (query, response.status_code, response.text[:300])
    assert response.json()["detail"]


def test_a_bad_item_is_refused_alone(shared_server: InProcessServer) -> None:
    """Items are applied in order, each refused alone (as a local tracker's commands): the
    valid run starts, the step that is a string is refused, naming the field."""
    token = shared_server.token(f"m-{uuid.uuid4().hex[:10]}")
    run_id = str(uuid.uuid4())
    response = shared_server.http.post("/v1/batches", headers={
        "Authorization": f"Bearer {token}"}, content=body([call("start_run", "x", run_id=run_id),
                                                           steps(run_id, row("1"))]))
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0] == {"ok": True, "value": run_id}
    assert results[1]["error"]["field"] == "step"
    runs = shared_server.http.get("/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert [(r["id"], r["steps"]) for r in runs.json()] == [(run_id, 0)]


def test_a_uri_is_data_the_server_never_fetches(shared_server: InProcessServer) -> None:
    """A cloud-metadata-like uri (here a listener on loopback that would see any request)
    is registered as given; nothing connects to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(1.0)
    hits: list[Any] = []

    def watch() -> None:
        with contextlib.suppress(OSError):  # the timeout: nothing connected
            hits.append(listener.accept())

    watcher = threading.Thread(target=watch)
    watcher.start()
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}/latest/meta-data/iam"
    token = shared_server.token(f"u-{uuid.uuid4().hex[:10]}")
    response = shared_server.http.post("/v1/batches", headers={
        "Authorization": f"Bearer {token}"}, content=body([call("register_artifact", uri,
                                                                type="model")]))
    watcher.join()
    listener.close()
    assert response.status_code == 200, response.text
    assert hits == []
    found = shared_server.http.get("/v1/artifacts",
                      headers={"Authorization": f"Bearer {token}"}).json()
    assert [a["uri"] for a in found] == [uri]


def test_replayed_and_forged_event_ids_store_nothing_twice(shared_server: InProcessServer) -> None:
    own = shared_server.token(f"r-{uuid.uuid4().hex[:10]}")
    other = shared_server.token(f"f-{uuid.uuid4().hex[:10]}")
    run_id = str(uuid.uuid4())
    first = call("start_run", "replayed", run_id=run_id)
    batch = body([first, steps(run_id, row(1), row(2))])
    for _ in range(2):
        answer = shared_server.http.post("/v1/batches", content=batch,
                            headers={"Authorization": f"Bearer {own}"})
        assert answer.status_code == 200
    again = json.dumps({"retry": True, "items": [first, steps(run_id, *json.loads(batch)[
        "items"][1]["rows"])]}).encode()
    assert shared_server.http.post("/v1/batches", content=again,
                      headers={"Authorization": f"Bearer {own}"}).status_code == 200
    runs = shared_server.http.get("/v1/runs", headers={"Authorization": f"Bearer {own}"})
    assert [(r["name"], r["steps"]) for r in runs.json()] == [("replayed", 2)]
    # another tenant forging the same event id (its own run) gets it taken as done: no event
    forged = dict(first, kwargs={"run_id": str(uuid.uuid4())})
    response = shared_server.http.post("/v1/batches", content=body([forged]),
                          headers={"Authorization": f"Bearer {other}"})
    assert response.json()["results"] == [{"ok": True, "duplicate": True}]
    assert shared_server.http.get("/v1/runs",
                     headers={"Authorization": f"Bearer {other}"}).json() == []
