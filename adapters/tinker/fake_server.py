"""A fake Tinker service on loopback: the REST endpoints the ``tinker`` 0.38 SDK calls.

Enough of the real protocol for the real ``ServiceClient``, ``TrainingClient``,
``SamplingClient`` and ``RestClient`` to run against it with no network and no key:
session creation, the futures protocol (``retrieve_future`` for training ops, the
``retrieve_futures`` queue for sampling), protobuf bodies where the SDK sends or expects them,
``training_runs`` and their checkpoints (training, sampler, external; publish, unpublish, TTL,
delete), ephemeral sampler weights (``save_weights_and_get_sampling_client``), the deprecated
``load_state*`` into a live run, ``copy_weights``, ``sessions/search`` (each session's status).
It trains nothing: a ``forward_backward`` (or ``forward``) answers a loss that falls with each
``optim_step`` the run applied; a sample answers fixed tokens.

Tests steer it through ``FakeTinkerService``: ``corrupt(run_id)`` sets the run's ``corrupted``
flag, ``expire``/``delete_checkpoint`` change what ``list_checkpoints`` returns, ``fault`` queues
hostile HTTP answers (malformed JSON, 5xx, 429 with ``Retry-After``) for a path, ``vanish``
makes a run answer 404, ``fail_next`` makes the next op of a kind fail as a future,
``fail_session`` makes a session's status ``SessionFailed``.

    with FakeTinkerServer() as server:   # server.base_url: http://127.0.0.1:PORT
        client = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fake")

Thread-safe: the HTTP server answers on its own threads; every state change holds one lock.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from lineage.adapters.tinker.fake_service import FakeTinkerService

API = "/api/v1"
SEGMENTS = {"save_weights": "weights", "save_weights_for_sampler": "sampler_weights",
            "save_weights_external": "external_weights"}


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
    if op == "save_weights_for_sampler" and not body.get("path"):  # ephemeral weights
        return 200, service.submit(op, {"sampling_session_id": _ephemeral(service, body),
                                        "type": op})
    if op in SEGMENTS:
        path = service.save(body["model_id"], body.get("path") or "unnamed", SEGMENTS[op],
                            body.get("ttl_seconds"))
        return 200, service.submit(op, {"path": path, "type": op})
    if op == "copy_weights":
        return 200, {"tinker_path": service.copy(body["source_path"], body.get("ttl_seconds"))}
    if op == "sessions/search":
        wanted = body.get("session_id")
        return 200, {"sessions": [service.session_summary(session) for session in service.sessions
                                  if wanted in (None, session)], "next_cursor": None}
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


def _ephemeral(service: FakeTinkerService, body: dict[str, Any]) -> str:
    """``save_weights_and_get_sampling_client``: a sampling session on the run's current
    weights, with no persistent path."""
    run = service.runs[body["model_id"]]
    session = f"{run.run_id.rsplit(':train:', 1)[0]}:sample:{body.get('sampling_session_seq_id', 0)}"
    service.sampling[session] = {"model_path": None, "done": [], "base_model": run.base_model}
    return session


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
    if "session_id" not in body:  # the deprecated load_state*: into the existing run
        run_id = body["model_id"]
        service.runs[run_id].optim_steps = held if body.get("optimizer") else 0
    else:
        run_id = service.create_model(body, source, held if body.get("optimizer") else 0)
    return service.submit("load_weights", {"path": path, "model_id": run_id, "type": "load_weights"})


def route_checkpoint(service: FakeTinkerService, method: str, path: str,
                     body: Any) -> tuple[int, Any]:
    """``/training_runs/{run}/checkpoints/{id}[/publish|/ttl]``: DELETE deletes it (or
    unpublishes), POST publishes, PUT sets its TTL."""
    run_id, _, checkpoint_id = path.removeprefix(API + "/training_runs/").partition(
        "/checkpoints/")
    checkpoint_id, action = unquote(checkpoint_id), ""
    if checkpoint_id.endswith(("/publish", "/ttl")):
        checkpoint_id, _, action = checkpoint_id.rpartition("/")
    run = service.runs.get(unquote(run_id))
    found = [c for c in run.checkpoints if c.checkpoint_id == checkpoint_id] if run else []
    if run is None or not found:
        return 404, {"detail": f"checkpoint not found: {path}"}
    if action == "publish":
        found[0].public = method == "POST"
    elif action == "ttl":
        ttl = body.get("ttl_seconds")
        found[0].expires_at = None if ttl is None else datetime.now(UTC) + timedelta(seconds=ttl)
    else:
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
            elif "/checkpoints/" in path and method != "GET":
                status, answer = route_checkpoint(service, method, path, body)
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

    def do_PUT(self) -> None:
        self._answer("PUT")


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
