"""``TinkerRunStatusSource``: watches the Tinker service for corrupted runs and vanished
checkpoints (a ``RunStatusSource`` for ``RecoveryMonitor`` / ``lineage monitor --source tinker``).

Each ``poll``:

- for every watched run recorded from Tinker (tag ``tinker.model_id``, or, for a run a
  recovery created, the Tinker run whose ``user_metadata`` names it; running, not yet flagged
  or recovering), ``GET /api/v1/training_runs/{id}``: ``corrupted: true`` is a ``RunSignal``
  (``tinker.corrupted``, retryable), which the monitor records as a failure and recovers;
- for every live ``tinker://`` checkpoint in the registry, grouped by the run in its path,
  ``GET /api/v1/training_runs/{id}/checkpoints``: a checkpoint whose ``expires_at`` has passed,
  or that the list no longer holds, gets ``Artifact.Expired`` with the reason;
- for every watched run whose ``get_training_run`` answered (not corrupted), its session's
  status (``POST /api/v1/sessions/search``, one per session per poll; ``sessions=False``
  turns this off): ``SessionFailed`` is a ``RunSignal`` (``tinker.session_failed.<category>``,
  retryable when the category is ``internal``), whatever failed the session (a request, a
  training run, a sampling session): a failed session takes no more requests.

It calls the endpoints the SDK's ``RestClient`` calls and parses the answers with the SDK's own
types, but through an injected ``httpx.Client``: the SDK's client retries up to 10 times (about
a minute) inside one call, which would hide the service's answers from the monitor and stall
it. Here a failed request (connection error, timeout, 5xx, 429, 404 for a run that vanished,
malformed JSON, a body the SDK's types refuse) is a ``PollFailure`` kept in ``errors`` and
counted in ``error_count``; the monitor takes them with ``drain_errors``. The run (or the
checkpoint listing) is then left alone for a backoff, doubling up to ``max_backoff_s``, or for
the service's ``Retry-After``. Nothing here raises out of ``poll``: the monitor never stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tinker import types

from lineage.adapters.tinker.recorder import checkpoints_on_tinker
from lineage.adapters.tinker.rest import reconcile
from lineage.adapters.tinker.resume import LINEAGE_RUN_KEY
from lineage.application.monitor import PollFailure
from lineage.ports import RunSignal

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"


class TinkerRunStatusSource:
    """See the module docstring. ``tracker`` gives the watched runs and the registry and
    records expiries; ``client`` is the ``httpx.Client`` to call the service with (default: one
    for ``base_url``, else ``TINKER_BASE_URL``, with ``api_key``, else ``TINKER_API_KEY``).
    ``clock`` is injectable for tests. Not thread-safe: one monitor polls it."""

    name = "tinker"

    def __init__(self, tracker: Any, *, base_url: str | None = None, api_key: str | None = None,
                 client: httpx.Client | None = None, timeout_s: float = 10.0,
                 backoff_s: float = 5.0, max_backoff_s: float = 300.0, sessions: bool = True,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.tracker = tracker
        self.sessions = sessions
        if client is None:
            key = api_key or os.environ.get("TINKER_API_KEY")
            if not key:
                raise ValueError("TINKER_API_KEY is not set: the Tinker status source needs an "
                                 "API key (set TINKER_API_KEY or pass api_key)")
            url = base_url or os.environ.get("TINKER_BASE_URL") or DEFAULT_BASE_URL
            client = httpx.Client(base_url=url, timeout=timeout_s,
                                  headers={"X-API-Key": key, "User-Agent": "lineage-monitor"})
        self.client = client
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.errors: list[PollFailure] = []
        self.error_count = 0
        self._failures: dict[str, int] = {}  # request key -> consecutive failures
        self._not_before: dict[str, datetime] = {}  # request key -> when to try again
        self._model_ids: dict[Any, str] = {}  # lineage run id -> Tinker run (resumed runs)

    def poll(self) -> list[RunSignal]:
        now = self.clock()
        signals: list[RunSignal] = []
        sessions: dict[str, Any] = {}  # session id -> its status, this poll
        for view in self.tracker.watched_runs():
            if view.corrupted or view.recovering or view.recovery_attempts:
                continue
            model_id = view.tags.get("tinker.model_id") or self._resumed_model_id(view, now)
            if not model_id:
                continue
            run = self._get(f"run:{model_id}", f"/api/v1/training_runs/{model_id}",
                            types.TrainingRun, now)
            if run is not None and run.corrupted:
                last = run.last_checkpoint.tinker_path if run.last_checkpoint else "none"
                signals.append(RunSignal(view.id, "tinker.corrupted", "TinkerRunCorrupted",
                                         f"the Tinker service flagged training run {model_id} "
                                         f"corrupted (its last checkpoint: {last})",
                                         corrupted=True, retryable=True, step=view.last_step))
            elif run is not None and self.sessions:
                failed = self._session_failure(model_id.rsplit(":train:", 1)[0], sessions, now)
                if failed is not None:
                    signals.append(RunSignal(
                        view.id, f"tinker.session_failed.{failed.category}", "SessionFailed",
                        f"the Tinker session of training run {model_id} failed "
                        f"({failed.category}, {_reason(failed.reason)}): {failed.message}"[:2000],
                        retryable=failed.category == "internal", step=view.last_step))
        self._check_checkpoints(now)
        return signals

    def _session_failure(self, session_id: str, seen: dict[str, Any], now: datetime) -> Any:
        """The session's ``SessionFailed`` status, or None (active, finished, unknown, or the
        search failed: a poll error). One search per session per poll."""
        if session_id not in seen:
            found = self._get(f"session:{session_id}", "/api/v1/sessions/search",
                              types.SessionSearchResponse, now,
                              body={"session_id": session_id, "limit": 1})
            summaries = [] if found is None else [s for s in found.sessions
                                                  if s.session_id == session_id]
            seen[session_id] = summaries[0].status if summaries else None
        status = seen[session_id]
        return status if isinstance(status, types.SessionFailed) else None

    def _resumed_model_id(self, view: Any, now: datetime) -> str | None:
        """The Tinker run of a run a recovery created (its tags predate the Tinker run): the
        one whose ``user_metadata`` names it (``TinkerResume`` stamps it), found by listing the
        service's runs; remembered once found."""
        if view.id in self._model_ids or view.resumed_checkpoint is None:
            return self._model_ids.get(view.id)
        if not self.tracker.artifact(view.resumed_checkpoint).uri.startswith("tinker://"):
            return None
        offset = 0
        while True:
            page = self._get("runs", f"/api/v1/training_runs?limit=100&offset={offset}",
                             types.TrainingRunsResponse, now)
            if page is None:
                return None
            for run in page.training_runs:
                if (run.user_metadata or {}).get(LINEAGE_RUN_KEY) == str(view.id):
                    self._model_ids[view.id] = run.training_run_id
                    return run.training_run_id
            offset += len(page.training_runs)
            if not page.training_runs or offset >= page.cursor.total_count:
                return None

    def drain_errors(self) -> list[PollFailure]:
        """The poll errors recorded since the last call (the monitor reports them)."""
        taken, self.errors = self.errors, []
        return taken

    def _check_checkpoints(self, now: datetime) -> None:
        by_run: dict[str, list[Any]] = {}
        for view in checkpoints_on_tinker(self.tracker, "live"):
            by_run.setdefault(view.uri.removeprefix("tinker://").split("/")[0], []).append(view)
        for model_id, artifacts in by_run.items():
            listing = self._get(f"checkpoints:{model_id}",
                                f"/api/v1/training_runs/{model_id}/checkpoints",
                                types.CheckpointsListResponse, now)
            if listing is not None:
                reconcile(self.tracker, artifacts, listing.checkpoints, now)

    def _get(self, key: str, path: str, model: Any, now: datetime,
             body: dict[str, Any] | None = None) -> Any:
        """GET ``path`` (POST ``body`` when given) parsed as ``model``; None (the failure
        recorded, a backoff set) when it failed or while an earlier failure's backoff runs."""
        if key in self._not_before and now < self._not_before[key]:
            return None
        try:
            value = model.model_validate(self._json(path, body))
        except Exception as error:  # every way a poll can fail is recorded; the monitor goes on
            self._record(key, path, error, now)
            return None
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        return value

    def _json(self, path: str, body: dict[str, Any] | None) -> Any:
        owned = "/training_runs/" in path and "/checkpoints" not in path  # as the SDK asks
        response = (self.client.post(path, json=body) if body is not None else
                    self.client.get(path, params={"access_scope": "owned"} if owned else None))
        response.raise_for_status()  # httpx.HTTPStatusError: recorded with its response
        return response.json()

    def _record(self, key: str, path: str, error: Exception, now: datetime) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
        response = getattr(error, "response", None)
        asked = _retry_after(response.headers.get("Retry-After")) if response is not None else None
        if asked is not None:
            delay = max(delay, min(asked, self.max_backoff_s))
        self._not_before[key] = now + timedelta(seconds=delay)
        self.error_count += 1
        self.errors.append(PollFailure(self.name, now, type(error).__name__,
                                       f"GET {path}: {error} (next try in {delay:g}s)"[:2000]))
        log.warning("lineage monitor: Tinker poll %s failed: %s", path, error)


def _reason(reason: Any) -> str:
    named = getattr(reason, "training_run_id", None) or getattr(reason, "request_id", None) \
        or getattr(reason, "sampling_session_id", None)
    return f"reason {reason.type} {named}"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the doubling backoff applies


