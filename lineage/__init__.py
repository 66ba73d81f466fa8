"""lineage: an event-sourced lineage and artifact tracker for machine-learning training.

    import lineage
    tracker = lineage.Tracker()                 # LINEAGE_DATABASE_URL, else ./lineage.db
    with tracker.start_run("sft", job={...}) as run:
        run.log_step(1, {"loss": 0.9})

The public API is exactly ``__all__`` (pinned by tests/unit/test_public_api.py).
"""

from __future__ import annotations

from lineage.config import Settings
from lineage.errors import (
    ArtifactNotFoundError,
    ArtifactRetiredError,
    ChecksumMismatchError,
    ConfigurationError,
    ConflictError,
    InvariantError,
    LineageError,
    NotFoundError,
    RunFinishedError,
    RunNotFoundError,
    StoreError,
    ValidationError,
    WriterError,
)
from lineage.handles import ArtifactRef, Pending
from lineage.queries import ArtifactView, RunView
from lineage.run_handle import RunHandle
from lineage.tracker import Tracker

__version__ = "0.1.0"

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactRetiredError",
    "ArtifactView",
    "ChecksumMismatchError",
    "ConfigurationError",
    "ConflictError",
    "InvariantError",
    "LineageError",
    "NotFoundError",
    "Pending",
    "RunFinishedError",
    "RunHandle",
    "RunNotFoundError",
    "RunView",
    "Settings",
    "StoreError",
    "Tracker",
    "ValidationError",
    "WriterError",
    "__version__",
]
