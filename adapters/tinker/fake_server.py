"""A fake Tinker service on loopback: the REST endpoints the ``tinker`` 0.38 SDK calls.

Enough of the real protocol for the real ``ServiceClient``, ``TrainingClient``,
``SamplingClient`` and ``RestClient`` to run against it with no network and no key:
session creation, the futures protocol (``retrieve_future`` for training ops, the
``retrieve_futures`` queue for sampling), protobuf bodies where the SDK sends or expects them,
``training_runs`` and their checkpoints. It trains nothing: a ``forward_backward`` answers a
loss that falls with each ``optim_step`` the run applied; a sample answers fixed tokens.

Tests steer it through ``FakeTinkerService``: ``corrupt(run_id)`` sets the run's ``corrupted``
flag, ``expire``/``delete_checkpoint`` change what ``list_checkpoints`` returns, ``fault`` queues
hostile HTTP answers (malformed JSON, 5xx, 429 with ``Retry-After``) for a path, ``vanish``
makes a run answer 404, ``fail_next`` makes the next op of a kind fail as a future.

    with FakeTinkerServer() as server:   # server.base_url: http://127.0.0.1:PORT
        client = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fake")

Thread-safe: the HTTP server answers on its own threads; every state change holds one lock.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from tinker.proto import tinker_public_pb2 as pb

API = "/api/v1"


@dataclass
class FakeCheckpoint:
    checkpoint_id: str  # "weights/000020" or "sampler_weights/000020"
    tinker_path: str
    time: datetime
    size_bytes: int | None = 1024
    expires_at: datetime | None = None
    user_metadata: dict[str, str] | None = None

    def json(self) -> dict[str, Any]:
        kind = "training" if self.checkpoint_id.startswith("weights/") else "sampler"
        return {"checkpoint_id": self.checkpoint_id, "checkpoint_type": kind,
                "time": self.time.isoformat(), "tinker_path": self.tinker_path,
                "size_bytes": self.size_bytes, "public": False,
                "user_metadata": self.user_metadata,
                "expires_at": None if self.expires_at is None else self.expires_at.isoformat()}


@dataclass
class FakeRun:
    run_id: str
    base_model: str
    lora_rank: int | None
    lora: dict[str, Any]
    optimizer: dict[str, Any]
    user_metadata: dict[str, str] | None
    corrupted: bool = False
    vanished: bool = False
    optim_steps: int = 0  # updates applied, in request order
    last_request_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    checkpoints: list[FakeCheckpoint] = field(default_factory=list)

    def last(self, prefix: str) -> dict[str, Any] | None:
        found = [c for c in self.checkpoints if c.checkpoint_id.startswith(prefix)]
        return found[-1].json() if found else None

    def json(self) -> dict[str, Any]:
        return {"training_run_id": self.run_id, "base_model": self.base_model,
                "model_owner": "fake", "is_lora": self.lora_rank is not None,
                "corrupted": self.corrupted, "lora_rank": self.lora_rank,
                "last_request_time": self.last_request_time.isoformat(),
                "last_checkpoint": self.last("weights/"),
                "last_sampler_checkpoint": self.last("sampler_weights/"),
                "user_metadata": self.user_metadata}


@dataclass(frozen=True)
class Fault:
    """A hostile answer served instead of the real one, for requests whose path contains
    ``path``: ``status``, a raw ``body`` (need not be JSON) and ``headers``."""

    path: str
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class FakeTinkerService:
    """The service's state, and the knobs tests turn (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, FakeRun] = {}
        self.sessions: dict[str, int] = {}  # session id -> models created
        self.sampling: dict[str, dict[str, Any]] = {}  # sampling session -> model path, queue
        self.futures: dict[str, tuple[str, Any]] = {}  # request id -> (kind, payload)
        self.faults: deque[Fault] = deque()
        self.failing: dict[str, tuple[str, str]] = {}  # op -> (message, category)
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)

    # -- knobs -------------------------------------------------------------------------------

    def corrupt(self, run_id: str, corrupted: bool = True) -> None:
        with self.lock:
            self.runs[run_id].corrupted = corrupted

    def vanish(self, run_id: str) -> None:
        with self.lock:
            self.runs[run_id].vanished = True

    def expire(self, tinker_path: str, at: datetime | None = None) -> None:
        """Give the checkpoint an ``expires_at`` in the past (or ``at``)."""
        with self.lock:
            self._checkpoint(tinker_path).expires_at = at or datetime.now(UTC) - timedelta(seconds=1)

    def delete_checkpoint(self, tinker_path: str) -> None:
        with self.lock:
            checkpoint = self._checkpoint(tinker_path)
            for run in self.runs.values():
                if checkpoint in run.checkpoints:
                    run.checkpoints.remove(checkpoint)

    def fault(self, path: str, status: int, body: bytes | str = b"", *,
              headers: dict[str, str] | None = None, times: int = 1) -> None:
        raw = body.encode() if isinstance(body, str) else body
        with self.lock:
            self.faults.extend([Fault(path, status, raw, tuple((headers or {}).items()))] * times)

    def fail_next(self, op: str, message: str = "injected failure", category: str = "server") -> None:
        """The next ``op`` (``forward_backward``, ``optim_step``, ``save_weights``...) completes
        as a failed future (``RequestFailedError`` in the SDK)."""
        with self.lock:
            self.failing[op] = (message, category)

    def run_ids(self) -> list[str]:
        with self.lock:
            return list(self.runs)

    # -- protocol ----------------------------------------------------------------------------

    def _checkpoint(self, tinker_path: str) -> FakeCheckpoint:
        for run in self.runs.values():
            for checkpoint in run.checkpoints:
                if checkpoint.tinker_path == tinker_path:
                    return checkpoint
        raise KeyError(tinker_path)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def submit(self, op: str, payload: Any, kind: str = "json") -> dict[str, str]:
        """Queue a future's answer; returns the SDK's ``UntypedAPIFuture`` body."""
        request_id = str(next(self._ids))
        if op in self.failing:
            message, category = self.failing.pop(op)
            kind, payload = "json", {"error": message, "category": category}
        self.futures[request_id] = (kind, payload)
        return {"request_id": request_id}

    def create_model(self, body: dict[str, Any], source: FakeRun | None = None,
                     optim_steps: int = 0) -> str:
        session = body["session_id"]
        run_id = f"{session}:train:{body.get('model_seq_id', self.sessions.get(session, 0))}"
        self.sessions[session] = self.sessions.get(session, 0) + 1
        lora = body.get("lora_config") or (source.lora if source else {})
        self.runs[run_id] = FakeRun(
            run_id, body.get("base_model") or (source.base_model if source else "unknown"),
            lora.get("rank"), lora, body.get("optimizer_config") or {"type": "adamw"},
            body.get("user_metadata") or None)
        self.runs[run_id].optim_steps = optim_steps
        return run_id

    def save(self, model_id: str, name: str, segment: str, ttl: int | None) -> str:
        run = self.runs[model_id]
        path = f"tinker://{model_id}/{segment}/{name}"
        expires = None if ttl is None else datetime.now(UTC) + timedelta(seconds=ttl)
        run.checkpoints.append(FakeCheckpoint(f"{segment}/{name}", path, datetime.now(UTC),
                                              expires_at=expires,
                                              user_metadata={"optim_steps": str(run.optim_steps)}))
        return path

    def forward_backward(self, raw: bytes) -> dict[str, str]:
        request = pb.ForwardBackwardRequest.FromString(raw)
        run = self.runs[request.model_id]
        run.last_request_time = datetime.now(UTC)
        output = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
        output.metrics["loss:sum"] = round(2.0 / (1 + run.optim_steps), 6)
        return self.submit("forward_backward", output.SerializeToString(), "proto")

    def sample(self, body: dict[str, Any]) -> dict[str, Any]:
        session = self.sampling[body["sampling_session_id"]]
        response = pb.SampleResponse()
        for _ in range(int(body.get("num_samples") or 1)):
            sequence = response.sequences.add()
            sequence.stop_reason = pb.STOP_REASON_LENGTH
            sequence.tokens = bytes(4 * 4)  # four int32 tokens
        future: dict[str, Any] = self.submit("sample", response.SerializeToString(), "proto")
        session["done"].append(future["request_id"])
        future["sample_sequence_ids"] = [f"{future['request_id']}-{n}"
                                         for n in range(len(response.sequences))]
        return future


def route_post(service: FakeTinkerService, path: str, body: Any) -> tuple[int, Any]:
    """The answer (status, JSON value) to a POST; a future's answer comes from
    ``retrieve_future``. Called with ``service.lock`` held."""
    op = path.removeprefix(API + "/")
    if op == "client/config":
        return 200, {"use_pyqwest_transport": False}
    if op in ("session_heartbeat", "telemetry"):
        return 200, {}
    if op == "create_session":
        session = f"fake-session-{len(service.sessions) + 1}"
        service.sessions[session] = 0
        return 200, {"session_id": session}
    if op == "create_model":
        run_id = service.create_model(body)
        return 200, service.submit(op, {"model_id": run_id, "type": "create_model"})
    if op == "get_info":
        run = service.runs[body["model_id"]]
        return 200, {"model_id": run.run_id, "is_lora": run.lora_rank is not None,
                     "lora_rank": run.lora_rank, "optimizer_config": run.optimizer,
                     "model_data": {"arch": "fake", "model_name": run.base_model,
                                    "tokenizer_id": run.base_model}}
    if op == "load_weights":
        return 200, _load_weights(service, body)
    if op == "optim_step":
        run = service.runs[body["model_id"]]
        run.optim_steps += 1
        return 200, service.submit(op, {"type": "optim_step", "metrics": {
            "optim_step": float(run.optim_steps), "grad_norm": 0.5}})
    if op in ("save_weights", "save_weights_for_sampler"):
        segment = "weights" if op == "save_weights" else "sampler_weights"
        path = service.save(body["model_id"], body.get("path") or "unnamed", segment,
                            body.get("ttl_seconds"))
        return 200, service.submit(op, {"path": path, "type": op})
    if op == "create_sampling_session":
        session = f"{body['session_id']}:sample:{body.get('sampling_session_seq_id', 0)}"
        model_path = body.get("model_path")
        owner = service.runs.get((model_path or "").removeprefix("tinker://").split("/")[0])
        service.sampling[session] = {"model_path": model_path, "done": [], "base_model":
                                     body.get("base_model") or (owner.base_model if owner else "?")}
        return 200, {"sampling_session_id": session}
    if op == "retrieve_future":
        return 200, service.futures[body["request_id"]]
    if op == "retrieve_futures":
        done = service.sampling[body["target"]["sampling_session_id"]]["done"]
        cursor = int(body.get("prev_cursor") or 0)
        return 200, {"completions": [{"state": "finished", "request_id": rid}
                                     for rid in done[cursor:]], "cursor": len(done)}
    return 404, {"detail": f"fake tinker: no route POST {path}"}


def _load_weights(service: FakeTinkerService, body: dict[str, Any]) -> dict[str, str]:
    path = body["path"]
    source_id, _, rest = path.removeprefix("tinker://").partition("/")
    source = service.runs.get(source_id)
    found = [c for c in source.checkpoints if c.tinker_path == path] if source else []
    if source is None or not found:
        return service.submit("load_weights", {"error": f"checkpoint {path} not found",
                                               "category": "user"})
    if body.get("optimizer") and not rest.startswith("weights/"):
        return service.submit("load_weights", {"error": f"{path} holds no optimizer state",
                                               "category": "user"})
    held = int((found[0].user_metadata or {}).get("optim_steps", 0))
    run_id = service.create_model(body, source, held if body.get("optimizer") else 0)
    return service.submit("load_weights", {"path": path, "model_id": run_id, "type": "load_weights"})


def route_delete(service: FakeTinkerService, path: str) -> tuple[int, Any]:
    run_id, _, checkpoint_id = path.removeprefix(API + "/training_runs/").partition(
        "/checkpoints/")
    run = service.runs.get(unquote(run_id))
    found = [c for c in run.checkpoints if c.checkpoint_id == unquote(checkpoint_id)] if run else []
    if run is None or not found:
        return 404, {"detail": f"checkpoint not found: {path}"}
    run.checkpoints.remove(found[0])
    return 200, None


def route_get(service: FakeTinkerService, path: str, query: dict[str, str]) -> tuple[int, Any]:
    if path == API + "/training_runs":
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 20))
        listed = [run for run in service.runs.values() if not run.vanished]
        return 200, {"training_runs": [run.json() for run in listed[offset:offset + limit]],
                     "cursor": {"offset": offset, "limit": limit, "total_count": len(listed)}}
    if path.startswith(API + "/samplers/"):
        sampler_id = unquote(path.removeprefix(API + "/samplers/"))
        session = service.sampling.get(sampler_id)
        if session is None:
            return 404, {"detail": f"sampler not found: {sampler_id}"}
        return 200, {"sampler_id": sampler_id, "base_model": session["base_model"],
                     "model_path": session["model_path"]}
    parts = path.removeprefix(API + "/training_runs/").split("/")
    run = service.runs.get(unquote(parts[0])) if path.startswith(API + "/training_runs/") else None
    if run is None or run.vanished:
        return 404, {"detail": f"training run not found: {path}"}
    if len(parts) == 1:
        return 200, run.json()
    if parts[1:] == ["checkpoints"]:
        return 200, {"checkpoints": [c.json() for c in run.checkpoints]}
    return 404, {"detail": f"fake tinker: no route GET {path}"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, method: str) -> None:
        service = self.server.service
        path = urlparse(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with service.lock:
            service.requests.append((method, path))
        fault = service.take_fault(path)
        if fault is not None:
            return self._send(fault.status, fault.body, dict(fault.headers))
        proto = "protobuf" in (self.headers.get("Content-Type") or "")
        body: Any = raw if proto else (json.loads(raw) if raw else {})
        with service.lock:
            if path.endswith("/forward_backward"):
                status, answer = 200, service.forward_backward(raw)
            elif path.endswith("/asample"):
                status, answer = 200, service.sample(body)
            elif method == "DELETE":
                status, answer = route_delete(service, path)
            elif method == "GET":
                query = dict(parse_qsl(urlparse(self.path).query))
                status, answer = route_get(service, path, query)
            else:
                status, answer = route_post(service, path, body)
        if isinstance(answer, tuple):  # a future's stored answer: (kind, payload)
            kind, payload = answer
            if kind == "proto":
                return self._send(200, payload, {"Content-Type": "application/x-protobuf"})
            answer = payload
        self._send(status, json.dumps(answer).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: FakeTinkerService


class FakeTinkerServer:
    """The fake service listening on 127.0.0.1 (an ephemeral port by default)."""

    def __init__(self, port: int = 0, service: FakeTinkerService | None = None) -> None:
        self.service = service or FakeTinkerService()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.service = self.service
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeTinkerServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-tinker",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTinkerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
