"""The state of the fake Tinker service (``fake_server``): runs, checkpoints, futures, and the
knobs tests steer it with (see ``fake_server``'s module doc)."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tinker.proto import tinker_public_pb2 as pb

KINDS = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}


@dataclass
class FakeCheckpoint:
    checkpoint_id: str  # "weights/000020", "sampler_weights/000020", "external_weights/..."
    tinker_path: str
    time: datetime
    size_bytes: int | None = 1024
    expires_at: datetime | None = None
    user_metadata: dict[str, str] | None = None
    public: bool = False

    def json(self) -> dict[str, Any]:
        kind = KINDS[self.checkpoint_id.split("/")[0]]
        return {"checkpoint_id": self.checkpoint_id, "checkpoint_type": kind,
                "time": self.time.isoformat(), "tinker_path": self.tinker_path,
                "size_bytes": self.size_bytes, "public": self.public,
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
        self.session_status: dict[str, dict[str, Any]] = {}  # session id -> SessionStatus
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

    def fail_session(self, session_id: str, reason: dict[str, str], category: str = "internal",
                     message: str = "injected session failure") -> None:
        """The session's status becomes ``SessionFailed`` (``reason``: e.g. ``{"type":
        "training_run", "training_run_id": ...}``), as ``sessions/search`` reports it."""
        with self.lock:
            self.session_status[session_id] = {"type": "failed", "category": category,
                                               "reason": reason, "message": message}

    def session_summary(self, session_id: str) -> dict[str, Any]:
        return {"session_id": session_id, "created_at": datetime.now(UTC).isoformat(),
                "owner": "fake", "project_id": "fake-project", "checkpoints_count": 0,
                "status": self.session_status.get(session_id, {"type": "active"})}

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

    def copy(self, source_path: str, ttl: int | None) -> str:
        """``copy_weights``: the checkpoint, copied into a new run (in a new session) that
        cannot be trained; returns the copy's path."""
        source = self._checkpoint(source_path)
        session = f"copy-session-{len(self.sessions) + 1}"
        self.sessions[session] = 0
        owner = self.runs[source_path.removeprefix("tinker://").split("/")[0]]
        run_id = self.create_model({"session_id": session}, owner,
                                   int((source.user_metadata or {}).get("optim_steps", 0)))
        segment, _, name = source.checkpoint_id.partition("/")
        return self.save(run_id, name, segment, ttl)

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
