"""tinker-cookbook log directories into the lineage: ``import_cookbook_log`` (and
``lineage import tinker-cookbook LOG_PATH [--follow]``).

A cookbook run writes ``config.json``, ``metrics.jsonl`` (``{"step": n, ...}``),
``checkpoints.jsonl`` (``CheckpointRecord``: ``name``, ``batch``, ``epoch``, ``final``,
``state_path``, ``sampler_path``, extra keys) and ``timing_spans.jsonl`` (``{"step", "spans"}``).
Re-running the same command on the same log path resumes it as a *new* Tinker training run
from the last record with a ``state_path``, appending to the same files. So:

- each process is a segment: a new one begins where a ``metrics.jsonl`` step does not follow
  the previous one; its Tinker run is the n-th distinct run named by the checkpoint paths;
- segment k is a run (id derived from the log path and k: importing again changes nothing;
  steps carry derived event ids); segment k > 0 resumes segment k-1 from the checkpoint the
  cookbook resumed from (the last with a ``state_path``), with the optimizer, at its batch;
  the earlier run is finished ``superseded``; a segment with a ``final`` record ``completed``;
- a checkpoint is recorded at its ``batch`` (the cookbook's step index), with the record kept
  in its metadata. The SL loop labels a checkpoint with the batch it has just applied and
  resumes *at* that batch (tinker-cookbook #935): the resumed run's job metadata says which of
  the old run's steps it redoes (``cookbook.resume.steps_redone``), and its first step repeats
  one of the old run's. The ``final`` record's
  ``batch``/``epoch`` are not a position (#367: ``batch=0``): it is recorded at the segment's
  last step, with ``label_mismatch`` saying so.

Idempotent: ids come from the source, so a second import records nothing new. Incremental: an
importer remembers each file's byte offset (``JsonlTail``), so each ``--follow`` pass reads
only what was appended and records only the new steps and checkpoints.

The log path may be local (a directory, ``file://``) or a cloud uri (``s3://``, ``gs://``,
``az://``), read through the cookbook's own ``Storage`` (``storage_from_uri``, fsspec with the
matching backend installed). The cookbook stages a cloud log's appends locally and uploads
them when it flushes (at checkpoints or the end): an import sees what was uploaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from tinker_cookbook.stores.storage import storage_from_uri

from lineage.domain import ids
from lineage.errors import RunExistsError, ValidationError


@dataclass
class Segment:
    """One cookbook process on the log path: its steps, timings and checkpoint records."""

    index: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[int, dict[str, float]] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    tinker_run: str | None = None

    @property
    def last_step(self) -> int | None:
        return self.steps[-1]["step"] if self.steps else None


@dataclass(frozen=True)
class ImportResult:
    runs: list[UUID]
    steps: int  # step records read (a re-import reads them again and stores nothing)
    checkpoints: int


class JsonlTail:
    """A JSON-lines file of a log directory, read incrementally through the cookbook's own
    ``Storage`` (local, or ``s3://``/``gs://``/``az://`` through fsspec): ``read()`` reads from
    the byte offset it reached last time and keeps the complete lines (a torn last line, still
    being written, waits for the next pass) in ``records``. A file that shrank was rewritten:
    it is read again from the start."""

    def __init__(self, storage: Any, name: str) -> None:
        self.storage = storage
        self.name = name
        self.offset = 0
        self.records: list[dict[str, Any]] = []

    def read(self) -> int:
        """Read what was appended; returns how many records were new."""
        stat = self.storage.stat(self.name)  # None: not written yet
        size = 0 if stat is None else stat.size
        if size < self.offset:
            self.offset, self.records = 0, []
        if size == self.offset:
            return 0
        data = self.storage.read_range(self.name, self.offset, size - self.offset)
        complete = data[:data.rfind(b"\n") + 1]
        new = [json.loads(line) for line in complete.split(b"\n") if line.strip()]
        self.offset += len(complete)
        self.records.extend(new)
        return len(new)


def segments_of(log_path: Path) -> list[Segment]:
    """Split a local log directory into segments (see the module docstring)."""
    storage = storage_from_uri(str(log_path))
    tails = {name: JsonlTail(storage, name) for name in FILES}
    for tail in tails.values():
        tail.read()
    return split_segments(tails)


FILES = ("metrics.jsonl", "timing_spans.jsonl", "checkpoints.jsonl")


def split_segments(tails: dict[str, JsonlTail]) -> list[Segment]:
    """The segments (see the module docstring) of the records read so far."""
    segments = _split(tails["metrics.jsonl"].records)
    for segment, timed in zip(segments, _split(tails["timing_spans.jsonl"].records),
                              strict=False):
        for record in timed.steps:
            spans = record.get("spans") or []
            segment.timings[record["step"]] = {
                str(span["name"]): float(span.get("duration") or 0.0) for span in spans}
    runs: list[str] = []
    for record in tails["checkpoints.jsonl"].records:
        path = record.get("state_path") or record.get("sampler_path") or ""
        run = path.removeprefix("tinker://").split("/")[0]
        if run not in runs:
            runs.append(run)
        while len(segments) < len(runs):
            segments.append(Segment(len(segments)))
        segment = segments[runs.index(run)]
        segment.tinker_run = run
        segment.checkpoints.append(record)
    return segments


def _split(records: list[dict[str, Any]]) -> list[Segment]:
    segments: list[Segment] = []
    previous: int | None = None
    for record in records:
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValidationError("step", "every metrics.jsonl record needs an integer step", step)
        if previous is None or step <= previous:
            segments.append(Segment(len(segments)))
        segments[-1].steps.append(record)
        previous = step
    return segments


class CookbookImporter:
    """Imports one log directory into ``tracker``; ``import_once`` may be called again and again
    (``--follow``): what is already recorded is skipped."""

    def __init__(self, tracker: Any, log_path: str | Path, *, name: str | None = None) -> None:
        self.tracker = tracker
        text = str(log_path)
        remote = "://" in text and not text.startswith("file://")
        if remote:  # s3://, gs://, az://: through fsspec, as the cookbook writes them
            self.location, label = text.rstrip("/"), text.rstrip("/").rsplit("/", 1)[-1]
        else:
            local = Path(text.removeprefix("file://")).resolve()
            if not local.is_dir():
                raise ValidationError("log_path", "must be a tinker-cookbook log directory",
                                      text)
            self.location, label = str(local), local.name
        try:
            self.storage = storage_from_uri(self.location)
            found = any(self.storage.exists(file) for file in ("config.json", *FILES))
        except Exception as error:  # a missing fsspec backend, bad credentials, a bad uri
            raise ValidationError("log_path", f"cannot be read ({type(error).__name__}: "
                                              f"{error})", text) from error
        if remote and not found:
            raise ValidationError("log_path", "holds no tinker-cookbook log (config.json, "
                                              "metrics.jsonl, checkpoints.jsonl)", text)
        self.name = name or f"cookbook {label}"
        self.key = f"tinker-cookbook:{self.location}"
        self.tails = {file: JsonlTail(self.storage, file) for file in FILES}
        self._config_record: dict[str, Any] | None = None
        self._handles: dict[int, Any] = {}  # segment -> its run's handle
        self._logged: dict[int, int] = {}  # segment -> step records recorded by this importer
        self._saved: dict[str, UUID] = {}  # checkpoint uri -> artifact id

    def import_once(self) -> ImportResult:
        """Read what the files gained since the last pass and record what is new."""
        for tail in self.tails.values():
            tail.read()
        config = self._config()
        segments = split_segments(self.tails)
        runs: list[UUID] = []
        self._previous_steps: list[dict[str, Any]] = []
        resumed_from: tuple[UUID, UUID, int] | None = None  # run, checkpoint, batch
        for segment in segments:
            handle = self._handles.get(segment.index)
            if handle is None:
                handle = self._run(segment, config, resumed_from, runs[-1] if runs else None)
                self._handles[segment.index] = handle
            runs.append(handle.id)
            if handle.finished_status is None:
                self._steps(handle, segment)
            self._previous_steps = segment.steps
            last_state = self._checkpoints(handle, segment)
            if last_state is not None:
                resumed_from = (handle.id, *last_state)
            self._finish(handle, segment, segment is not segments[-1])
        return ImportResult(runs, sum(len(s.steps) for s in segments),
                            sum(len(s.checkpoints) for s in segments))

    def _config(self) -> dict[str, Any]:
        """``config.json`` (written once, when the first process starts), read once."""
        if self._config_record is None and self.storage.exists("config.json"):
            self._config_record = json.loads(self.storage.read("config.json"))
        return self._config_record or {}

    def _run(self, segment: Segment, config: dict[str, Any],
             resumed_from: tuple[UUID, UUID, int] | None, previous: UUID | None) -> Any:
        key = f"{self.key}#{segment.index}"
        cookbook: dict[str, Any] = {"log_path": self.location, "segment": segment.index,
                                    "tinker_run": segment.tinker_run}
        job: dict[str, Any] = {"key": key, "metadata": {"cookbook": cookbook, "config": config}}
        if isinstance(config.get("model_name"), str):
            job["model"] = config["model_name"]
        if resumed_from is not None and previous is not None:
            redone = [s["step"] for s in self._previous_steps if s["step"] >= resumed_from[2]]
            cookbook["resume"] = {"checkpoint_batch": resumed_from[2],
                                  "steps_redone": [redone[0], redone[-1]] if redone else None}
        tags = {"source": "tinker-cookbook"}
        run_id = ids.run_id_for_key(self.tracker.tenant_id, key)
        try:
            if resumed_from is None or previous is None:
                return self.tracker.start_run(self.name, job=job, tags=tags)
            _, checkpoint, batch = resumed_from
            return self.tracker.resume_run(previous, checkpoint, name=self.name, job=job,
                                           tags=tags, optimizer_restored=True, step=batch)
        except RunExistsError:
            return self.tracker.run_handle(run_id)

    def _steps(self, handle: Any, segment: Segment) -> None:
        """Log the segment's steps this importer has not logged yet (event ids derived from
        their line: another importer's pass stores nothing twice)."""
        done = self._logged.get(segment.index, 0)
        for line, record in enumerate(segment.steps[done:], start=done):
            step = record["step"]
            metrics = {k: float(v) for k, v in record.items() if k != "step"
                       and isinstance(v, int | float) and not isinstance(v, bool)}
            tokens = record.get("num_tokens")
            handle.log_step(step, metrics, durations=segment.timings.get(step) or None,
                            tokens=tokens if isinstance(tokens, int) else None,
                            event_id=uuid5(handle.id, f"cookbook-step:{line}"))
        self._logged[segment.index] = len(segment.steps)

    def _checkpoints(self, handle: Any, segment: Segment) -> tuple[UUID, int] | None:
        """Record the segment's checkpoints; returns the last one with a state path (the one
        a resume would load) and its batch."""
        last: tuple[UUID, int] | None = None
        for record in segment.checkpoints:
            step, note = self._position(record, segment)
            metadata = {"cookbook_record": record, **note}
            state = None
            if record.get("state_path"):
                state = self._save(handle, record["state_path"], step, metadata, True, None)
                last = (state, step)
            if record.get("sampler_path"):
                self._save(handle, record["sampler_path"], step, metadata, False, state)
        return last

    def _save(self, handle: Any, uri: str, step: int, metadata: dict[str, Any],
              optimizer: bool, parent: UUID | None) -> UUID:
        """Record one checkpoint (once per importer); on a run an earlier import finished,
        only its id."""
        if uri in self._saved:
            return self._saved[uri]
        if handle.finished_status is not None:
            return ids.artifact_id(self.tracker.tenant_id, uri, None, handle.id, step)
        ref = handle.save_checkpoint(uri, step=step, includes_optimizer=optimizer,
                                     metadata=metadata,
                                     parents=[parent] if parent is not None else None)
        self._saved[uri] = UUID(str(ref.id))
        return self._saved[uri]

    def _position(self, record: dict[str, Any], segment: Segment) -> tuple[int, dict[str, Any]]:
        batch = record.get("batch")
        if record.get("final") or record.get("name") == "final" or not isinstance(batch, int):
            step = segment.last_step if segment.last_step is not None else 0
            return step, {"label_mismatch": f"the final record says batch {batch}, epoch "
                                            f"{record.get('epoch')}; it follows step {step}"}
        return batch, {"position": "the record's batch: the SL loop labels a checkpoint with "
                                   "the batch it has just applied, and a resume redoes it"}

    def _finish(self, handle: Any, segment: Segment, superseded: bool) -> None:
        if handle.finished_status is not None:
            return
        if superseded:
            handle.finish("superseded", reason="the cookbook process stopped; the next run on "
                                               "this log path resumed it").wait()
        elif any(r.get("final") or r.get("name") == "final" for r in segment.checkpoints):
            handle.finish("completed").wait()


def import_cookbook_log(tracker: Any, log_path: str | Path,
                        name: str | None = None) -> ImportResult:
    """Import a cookbook log directory once (see the module docstring)."""
    result = CookbookImporter(tracker, log_path, name=name).import_once()
    tracker.flush()
    return result
