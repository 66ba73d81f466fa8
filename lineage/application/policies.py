"""Checkpoint and retry policies (DESIGN §7): pure values, validated when built.

``CheckpointPolicy`` (TrainingIR) says when a run saves a checkpoint, which checkpoints it keeps
and which one is best; it is stored with the run's job spec (``to_dict``/``from_dict``).
``CheckpointSchedule`` asks it step after step, keeping the state between calls for one run.
``RetryPolicy`` (NSAI work model) says how often and how patiently a recovery is retried, and
which errors are worth retrying. None of them does I/O, reads a clock or sleeps: the callers (the
run handle, the retention worker, the recovery executor) inject time.

Every bad value raises ValidationError naming the field (``save_every``, or
``job.checkpoint_policy.save_every`` when read from a job spec) before anything is stored.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from lineage.application import validation
from lineage.errors import ValidationError

STRATEGIES = ("steps", "epoch", "best", "last", "all")
BEST_MODES = ("min", "max")
BACKOFFS = ("exponential", "linear", "constant")
ERROR_KINDS = ("timeout", "backend_unavailable", "capacity")

# Class-name fragments that say what kind of trouble an exception is, for libraries that do not
# subclass TimeoutError or ConnectionError (HTTP clients, gRPC, cloud SDKs).
_NAME_HINTS = (
    ("timeout", ("Timeout", "TimedOut", "DeadlineExceeded")),
    ("backend_unavailable", ("Unavailable", "ConnectionError", "ConnectError", "BadGateway")),
    ("capacity", ("Capacity", "ResourceExhausted", "RateLimit", "TooManyRequests", "OutOfMemory",
                  "Quota")),
)
_STATUS_KINDS = {408: "timeout", 504: "timeout", 502: "backend_unavailable",
                 503: "backend_unavailable", 429: "capacity", 507: "capacity"}


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to save checkpoints, how many to keep, and how the best one is chosen.

    - ``strategy``: ``steps`` (every ``save_every`` steps), ``epoch`` (when a new epoch that is
      a multiple of ``save_every`` begins, i.e. right after ``save_every`` more epochs ended;
      default every epoch), ``best`` (whenever ``best_metric`` improves), ``last`` (only the
      final step) or ``all`` (every time you ask).
    - ``keep_last``: retention keeps the newest ``keep_last`` checkpoints of the run (by step)
      plus any the run must keep (the best, protected aliases, resumed or derived from); None
      keeps everything.
    - ``save_best``: also checkpoint whenever ``best_metric`` improves; needs ``best_metric``.
    - ``best_metric`` / ``best_mode``: evaluations move the run's ``best`` alias when this metric
      is strictly better (``min``: lower, ``max``: higher). NaN and infinities are never best; a
      tie keeps the earlier checkpoint.
    - ``format``: the checkpoint format saves default to.
    """

    strategy: str = "steps"
    save_every: int | None = None
    keep_last: int | None = None
    save_best: bool = False
    best_metric: str | None = None
    best_mode: str = "min"
    format: str = "safetensors"

    def __post_init__(self) -> None:
        validation.choice(self.strategy, "strategy", STRATEGIES)
        if self.save_every is not None:
            validation.positive_int(self.save_every, "save_every")
            if self.strategy not in ("steps", "epoch"):
                raise ValidationError("save_every", f"only applies to strategies steps and "
                                                    f"epoch, not {self.strategy!r}", self.save_every)
        elif self.strategy == "steps":
            raise ValidationError("save_every", "is required with strategy 'steps' (save every "
                                                "how many steps?)")
        elif self.strategy == "epoch":
            object.__setattr__(self, "save_every", 1)
        if self.keep_last is not None:
            validation.positive_int(self.keep_last, "keep_last")
        if not isinstance(self.save_best, bool):
            raise ValidationError("save_best", "must be true or false", self.save_best)
        if self.best_metric is not None:
            validation.name(self.best_metric, "best_metric")
        elif self.save_best:
            raise ValidationError("best_metric", "is required when save_best is true "
                                                 "(which metric decides the best checkpoint?)")
        elif self.strategy == "best":
            raise ValidationError("best_metric", "is required with strategy 'best'")
        validation.choice(self.best_mode, "best_mode", BEST_MODES)
        validation.choice(self.format, "format", validation.CHECKPOINT_FORMATS)

    @property
    def name(self) -> str:
        """A short label recorded with retirements: ``checkpoint_policy(steps/100, keep_last=5)``."""
        every = f"/{self.save_every}" if self.save_every else ""
        return f"checkpoint_policy({self.strategy}{every}, keep_last={self.keep_last})"

    def is_better(self, value: float | None, current: float | None) -> bool:
        """``value`` is a new best compared with ``current`` (None: nothing yet).

        Non-finite values (NaN, +-inf) are never best; equal is not better (ties keep the
        earlier checkpoint).
        """
        if value is None or not math.isfinite(value):
            return False
        if current is None:
            return True
        return value < current if self.best_mode == "min" else value > current

    def should_checkpoint(self, step: int, epoch: int | None = None,
                          metrics: Mapping[str, float] | None = None, *,
                          previous_epoch: int | None = None, best_value: float | None = None,
                          final: bool = False) -> bool:
        """Whether a checkpoint is due after ``step``. Pure: the state it needs is passed in.

        ``previous_epoch`` is the epoch of the previous call (for ``epoch``); ``best_value`` the
        best ``best_metric`` value seen so far (for ``best`` and ``save_best``); ``final`` says
        this is the run's last step (every strategy but ``best`` saves it). ``CheckpointSchedule``
        (behind ``RunHandle.should_checkpoint``) keeps that state for you.
        """
        step = validation.step(step)
        epoch = validation.optional_step(epoch, "epoch")
        values = {} if metrics is None else validation.metrics(metrics)
        if self.strategy == "all" or (final and self.strategy != "best"):
            return True
        due = False
        if self.strategy == "steps":
            due = step > 0 and step % (self.save_every or 1) == 0
        elif self.strategy == "epoch":
            due = (epoch is not None and previous_epoch is not None and epoch > previous_epoch
                   and epoch % (self.save_every or 1) == 0)
        if self.strategy == "best" or self.save_best:
            due = due or self.is_better(self.metric_value(values), best_value)
        return due

    def metric_value(self, metrics: Mapping[str, float]) -> float | None:
        """The ``best_metric`` value in ``metrics`` as a float, None when absent."""
        if self.best_metric is None or self.best_metric not in metrics:
            return None
        return float(metrics[self.best_metric])

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, field: str = "checkpoint_policy") -> CheckpointPolicy:
        """Build from a stored or hand-written mapping; errors name ``field.<key>``."""
        if isinstance(data, CheckpointPolicy):
            return data
        return _from_mapping(cls, data, field)


class CheckpointSchedule:
    """``CheckpointPolicy.should_checkpoint`` for one run, with the state it needs kept between
    calls: the previous call's epoch and the best ``best_metric`` value among the calls that
    returned True. Thread-safe: each call sees the state the previous one left."""

    def __init__(self, policy: CheckpointPolicy) -> None:
        self.policy = policy
        self._previous_epoch: int | None = None
        self._best_seen: float | None = None
        self._lock = threading.Lock()

    def should_checkpoint(self, step: int, epoch: int | None = None,
                          metrics: Mapping[str, float] | None = None, *,
                          final: bool = False) -> bool:
        policy = self.policy
        with self._lock:
            due = policy.should_checkpoint(step, epoch, metrics, previous_epoch=self._previous_epoch,
                                           best_value=self._best_seen, final=final)
            if epoch is not None:
                self._previous_epoch = epoch
            value = None if metrics is None else policy.metric_value(metrics)
            if due and policy.is_better(value, self._best_seen):
                self._best_seen = value
        return due


@dataclass(frozen=True)
class RetryPolicy:
    """How a recovery is retried.

    ``max_attempts`` attempts in all (1 = no retry); between attempts the executor sleeps
    ``delays()[i]``: ``initial_delay_s`` times 2**i (``exponential``), times i+1 (``linear``)
    or unchanged (``constant``), never more than ``max_delay_s``. ``jitter`` (0..1) takes up to
    that fraction off each delay at random, so many recovering runs do not retry in step.
    ``retryable_errors`` lists error kinds (``timeout``, ``backend_unavailable``, ``capacity``)
    and exception types (classes, or their names as stored: ``"builtins.OSError"``).
    """

    max_attempts: int = 3
    backoff: str = "exponential"
    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    retryable_errors: tuple[str | type[BaseException], ...] = ERROR_KINDS
    jitter: float = 0.0

    def __post_init__(self) -> None:
        validation.positive_int(self.max_attempts, "max_attempts")
        validation.choice(self.backoff, "backoff", BACKOFFS)
        validation.number(self.initial_delay_s, "initial_delay_s")
        validation.number(self.max_delay_s, "max_delay_s")
        if self.max_delay_s < self.initial_delay_s:
            raise ValidationError("max_delay_s", f"must be at least initial_delay_s "
                                                 f"({self.initial_delay_s})", self.max_delay_s)
        validation.number(self.jitter, "jitter")
        if self.jitter > 1:
            raise ValidationError("jitter", "is a fraction of each delay: between 0 and 1",
                                  self.jitter)
        object.__setattr__(self, "retryable_errors", _error_entries(self.retryable_errors))

    def delays(self, random: Callable[[], float] | None = None) -> list[float]:
        """The ``max_attempts - 1`` waits between attempts, in seconds. ``random`` (returning
        [0, 1)) is used only when ``jitter`` is set; without it the jitter is left out."""
        waits = []
        for index in range(self.max_attempts - 1):
            if self.backoff == "exponential":
                delay = self.initial_delay_s * 2 ** index
            elif self.backoff == "linear":
                delay = self.initial_delay_s * (index + 1)
            else:
                delay = self.initial_delay_s
            delay = min(delay, self.max_delay_s)
            if self.jitter and random is not None:
                delay -= delay * self.jitter * random()
            waits.append(delay)
        return waits

    def is_retryable(self, error: BaseException | str) -> bool:
        """Whether ``error`` (an exception, or an error kind / exception class name as
        recorded in a failure event) is worth another attempt under this policy."""
        kind = error_kind(error)
        names = _class_names(error)
        for entry in self.retryable_errors:
            if isinstance(entry, str):
                if entry == kind or entry in names:
                    return True
            elif isinstance(error, entry):
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["retryable_errors"] = [entry if isinstance(entry, str) else _qualified(entry)
                                    for entry in self.retryable_errors]
        return data

    @classmethod
    def from_dict(cls, data: Any, field: str = "retry_policy") -> RetryPolicy:
        if isinstance(data, RetryPolicy):
            return data
        return _from_mapping(cls, data, field)


def error_kind(error: BaseException | str) -> str | None:
    """The retry kind of an error: ``timeout``, ``backend_unavailable``, ``capacity`` or None.

    An exception may say so itself (a ``retry_kind`` attribute); else its type decides
    (TimeoutError, ConnectionError, MemoryError), then an HTTP ``status_code`` (408/504, 502/503,
    429/507), then its class name (``ReadTimeout``, ``ServiceUnavailable``, ``RateLimitError``).
    A string is a kind or a class name, as stored in failure events.
    """
    if isinstance(error, str):
        if error in ERROR_KINDS:
            return error
        return _kind_from_names([error.rsplit(".", 1)[-1]])
    declared = getattr(error, "retry_kind", None)
    if declared in ERROR_KINDS:
        return str(declared)
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "backend_unavailable"
    if isinstance(error, MemoryError):
        return "capacity"
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    return _kind_from_names([cls.__name__ for cls in type(error).__mro__])


def _kind_from_names(names: Iterable[str]) -> str | None:
    for name in names:
        for kind, hints in _NAME_HINTS:
            if any(hint in name for hint in hints):
                return kind
    return None


def _class_names(error: BaseException | str) -> set[str]:
    if isinstance(error, str):
        return {error, error.rsplit(".", 1)[-1]}
    names: set[str] = set()
    for cls in type(error).__mro__:
        names.update((cls.__name__, _qualified(cls)))
    return names


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _error_entries(value: Any) -> tuple[str | type[BaseException], ...]:
    if isinstance(value, str | type) or not isinstance(value, Iterable):
        raise ValidationError("retryable_errors", "must be a list of error kinds and exception "
                                                  "types", value)
    entries: list[str | type[BaseException]] = []
    for entry in value:
        if not (_is_exception_type(entry) or _is_error_name(entry)):
            raise ValidationError("retryable_errors", f"unknown entry {entry!r}: use "
                                  f"{', '.join(ERROR_KINDS)} or an exception type", entry)
        entries.append(entry)
    return tuple(entries)


def _is_exception_type(entry: Any) -> bool:
    return isinstance(entry, type) and issubclass(entry, BaseException)


def _is_error_name(entry: Any) -> bool:
    """A kind, or a class name (``TimeoutError``, ``httpx.ReadTimeout``): a lowercase word that
    is not a kind is a typo, refused rather than never matching."""
    return isinstance(entry, str) and (entry in ERROR_KINDS or entry[:1].isupper() or "." in entry)


def _from_mapping(cls: Any, data: Any, field: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValidationError(field, f"must be a mapping or a {cls.__name__}, not "
                                     f"{type(data).__name__}", data)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            raise ValidationError(f"{field}.{key}", f"unknown field; expected one of "
                                                    f"{', '.join(known)}", key)
    try:
        return cls(**dict(data))
    except ValidationError as error:
        raise ValidationError(f"{field}.{error.field}", error.rule, error.value) from None
