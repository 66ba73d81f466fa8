"""lineage: an event-sourced lineage and artifact tracker for machine-learning training.

    import lineage
    tracker = lineage.Tracker()                 # LINEAGE_DATABASE_URL, else ./lineage.db
    with tracker.start_run("sft", job={...}) as run:
        run.log_step(1, {"loss": 0.9})

The public API is exactly ``__all__`` (pinned by tests/unit/test_public_api.py).
"""

from __future__ import annotations

from lineage._source_tree import map_checkout
from lineage.api import Tracker
from lineage.application.handles import ArtifactRef, Pending
from lineage.application.monitor import LocalRunStatusSource, RecoveryMonitor
from lineage.application.policies import CheckpointPolicy, RetryPolicy
from lineage.application.recovery_result import RecoveryResult
from lineage.application.run_handle import RunHandle
from lineage.application.views import ArtifactView, RunView
from lineage.config import Settings
from lineage.errors import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ArtifactRetiredError,
    ChecksumMismatchError,
    ConfigurationError,
    ConflictError,
    InvariantError,
    LineageError,
    NotFoundError,
    ReadOnlyStoreError,
    RunExistsError,
    RunFinishedError,
    RunNotFoundError,
    StepGapError,
    StoreError,
    ValidationError,
    WriterError,
)
from lineage.version import __version__

# Started in a source checkout: adapters/ and projections/ are lineage.adapters and
# lineage.projections there too (no module above imports them at import time).
map_checkout(__path__[0])

__all__ = [
    "ArtifactExistsError",
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactRetiredError",
    "ArtifactView",
    "CheckpointPolicy",
    "ChecksumMismatchError",
    "ConfigurationError",
    "ConflictError",
    "InvariantError",
    "LineageError",
    "LocalRunStatusSource",
    "NotFoundError",
    "Pending",
    "ReadOnlyStoreError",
    "RecoveryMonitor",
    "RecoveryResult",
    "RetryPolicy",
    "RunExistsError",
    "RunFinishedError",
    "RunHandle",
    "RunNotFoundError",
    "RunView",
    "Settings",
    "StepGapError",
    "StoreError",
    "Tracker",
    "ValidationError",
    "WriterError",
    "__version__",
]
