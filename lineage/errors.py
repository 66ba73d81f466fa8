"""The one error tree of lineage.

    LineageError
    ├── ValidationError            bad input, raised before anything is stored
    │   └── ChecksumMismatchError  a supplied checksum does not match the file
    ├── NotFoundError
    │   ├── RunNotFoundError
    │   └── ArtifactNotFoundError
    ├── InvariantError             the domain refuses the change
    │   ├── RunFinishedError       steps or changes after a run finished
    │   ├── RunExistsError         starting a run whose id (or job key) is already used
    │   ├── StepGapError           a step after steps of its run that were not committed
    │   ├── ArtifactRetiredError   aliases on a retired artifact
    │   └── ArtifactExistsError    registering an artifact again with other details
    ├── ConflictError              two writers changed one aggregate; retries ran out
    ├── StoreError                 the event store failed; ``kind`` says why in words
    │   └── ReadOnlyStoreError     a write to a store that can only be read
    ├── WriterError                the background writer could not commit some events
    ├── ConfigurationError         a missing or invalid setting
    ├── ProjectionBusyError        another runner holds this database's projection lock
    ├── ProofError                 no proof can be given (not sealed yet, seals bad)
    ├── ResumeCommandError         (lineage.cli.recovery) the ``--exec`` resume command failed
    ├── TinkerResumeError          (lineage.adapters.tinker.resume) a resume through the SDK failed
    └── ExportError                spans could not be delivered to the OTLP collector
        ├── CollectorUnavailableError  unreachable, 503/429 or timing out past the retry budget
        └── ExportRejectedError        the collector refused the request (not retried)

Every error carries its context on the instance (``field``, ``run_id``, ``artifact_id``,
``uri``) so callers and the CLI can report it without parsing the message.

Outside the tree on purpose: signals between an adapter and its one caller, caught there and
never raised to users. They do not derive from LineageError, so no ``except LineageError`` on
the way can swallow them by mistake.

    Exception
    ├── DuplicateEventError        (lineage.ports) the append's event ids are already stored;
    │                              the writer drops those commands as done
    ├── VersionConflictError       (lineage.ports) a stream version was taken by another
    │                              writer; the writer reloads and retries, then ConflictError
    └── Retryable                  (lineage.adapters.otlp.transport) one OTLP attempt failed
                                   retryably; in the end CollectorUnavailableError

``tests/unit/test_error_tree.py`` checks that every exception class of lineage/, adapters/ and
projections/ is drawn here, under its base class.
"""

from __future__ import annotations

from typing import Any


class LineageError(Exception):
    """Root of every error lineage raises on purpose."""


class ValidationError(LineageError, ValueError):
    """A field of the input breaks a rule. ``field`` names it, ``rule`` says what was wrong."""

    def __init__(self, field: str, rule: str, value: Any = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field}: {rule}")


class ChecksumMismatchError(ValidationError):
    """The caller supplied a checksum that the file's content does not have."""

    def __init__(self, field: str, expected: str, actual: str, uri: str) -> None:
        self.expected = expected
        self.actual = actual
        self.uri = uri
        super().__init__(field, f"does not match the file {uri} (file has {actual})", expected)


class NotFoundError(LineageError, LookupError):
    """Something named by id does not exist in the store."""


class RunNotFoundError(NotFoundError):
    def __init__(self, run_id: Any) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} not found")


class ArtifactNotFoundError(NotFoundError):
    def __init__(self, artifact_id: Any) -> None:
        self.artifact_id = artifact_id
        super().__init__(f"artifact {artifact_id} not found")


class InvariantError(LineageError):
    """The domain refuses a change that would break one of its rules."""


class RunFinishedError(InvariantError):
    def __init__(self, run_id: Any, status: str, what: str = "change") -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} is {status}: no {what} after a run finished")


class RunExistsError(InvariantError):
    def __init__(self, run_id: Any, name: str, key: str | None = None) -> None:
        self.run_id = run_id
        self.key = key
        used = f"job key {key!r}" if key is not None else "run id"
        super().__init__(f"{used} is already used by run {run_id} ({name!r}): a run starts "
                         "once; record more on it with tracker.run_handle(run_id), or choose "
                         "another id or key")


class ArtifactRetiredError(InvariantError):
    def __init__(self, artifact_id: Any, what: str = "change") -> None:
        self.artifact_id = artifact_id
        super().__init__(f"artifact {artifact_id} is retired: no {what} on a retired artifact")


class ArtifactExistsError(InvariantError):
    """The artifact (same uri, content, run and step) is registered already, with another
    value of ``field``: the registry keeps what was registered first and stores nothing."""

    def __init__(self, artifact_id: Any, uri: str, field: str, stored: Any, given: Any) -> None:
        self.artifact_id = artifact_id
        self.uri = uri
        self.field = field
        self.stored = stored
        self.given = given
        super().__init__(f"artifact {artifact_id} ({uri}) is registered with {field}={stored!r}; "
                         f"registering it again with {field}={given!r} is refused: a registered "
                         "artifact does not change (register changed bytes at another path, or "
                         "register again with the same details)")


class ConflictError(LineageError):
    """Another writer changed the same aggregate, and reload-and-retry did not succeed."""

    def __init__(self, aggregate_id: Any, attempts: int) -> None:
        self.aggregate_id = aggregate_id
        self.attempts = attempts
        super().__init__(
            f"{aggregate_id} was changed by another writer; gave up after {attempts} attempts"
        )


DISK_FULL = "disk full"
READ_ONLY = "read-only"
UNREACHABLE = "unreachable server"
LOCKED = "database is locked"


class StepGapError(InvariantError):
    """Steps of this run were not committed (``first_step`` on, because of ``reason``): a later
    step would leave a hole in the run's stored steps, so none is accepted any more."""

    def __init__(self, run_id: Any, first_step: int, reason: str) -> None:
        self.run_id = run_id
        self.first_step = first_step
        self.reason = reason
        super().__init__(f"run {run_id}: the steps from step {first_step} on were not "
                         f"committed ({reason}); the run cannot go on without a hole in its "
                         "steps: finish it, or resume it from a checkpoint as a new run")


class StoreError(LineageError):
    """The event store failed. ``kind`` says why in words where the adapter could tell:
    ``DISK_FULL``, ``READ_ONLY``, ``UNREACHABLE``, ``LOCKED`` (else None: see the message)."""

    kind: str | None = None

    def __init__(self, message: str, kind: str | None = None) -> None:
        if kind is not None:
            self.kind = kind
        super().__init__(message)


class ReadOnlyStoreError(StoreError):
    """The store can only be read (a read-only file, directory, mount, role or transaction, or
    a ``?mode=ro`` URL): ``location`` names it; nothing was written."""

    kind = READ_ONLY

    def __init__(self, location: str, reason: str = "opened read-only") -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"read-only: {location} cannot be written ({reason})")


class WriterError(LineageError):
    """The background writer could not commit some events; ``failures`` lists why and
    ``reason`` says the first cause in words (``StoreError.kind`` for a store failure)."""

    def __init__(self, failures: list[BaseException], lost: int) -> None:
        self.failures = failures
        self.lost = lost
        first = failures[0] if failures else None
        self.reason = getattr(first, "kind", None) or str(first)
        super().__init__(f"{lost} event(s) were not committed: {self.reason}; "
                         f"first error: {first!r}")


class ConfigurationError(LineageError):
    """A setting is missing or invalid; the message says what to set."""


class ProofError(LineageError):
    """No proof can be given: the event is not sealed yet, a seal is missing or bad, or the
    stored rows no longer match their seals (``lineage verify`` says where)."""


class ProjectionBusyError(LineageError):
    """Another process (or runner) is running the projections on this database."""


class ExportError(LineageError):
    """Spans (or OpenLineage events) could not be delivered; ``endpoint`` names the collector,
    ``what`` the export. The exporter's tracked position is not advanced past them, so a later
    export sends them again."""

    def __init__(self, endpoint: str, reason: str, what: str = "OTLP export") -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"{what} to {endpoint} failed: {reason}")


class CollectorUnavailableError(ExportError):
    """The collector could not be reached, or answered "try later", for the whole retry budget."""

    def __init__(self, endpoint: str, reason: str, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(endpoint, f"collector unavailable after {attempts} attempt(s): {reason}")


class ExportRejectedError(ExportError):
    """The collector refused the request for good (bad request, authentication, not found)."""
