from __future__ import annotations

import lineage

PINNED = [
    "ArtifactExistsError", "ArtifactNotFoundError", "ArtifactRef", "ArtifactRetiredError",
    "ArtifactView", "CheckpointPolicy", "ChecksumMismatchError", "ConfigurationError",
    "ConflictError", "InvariantError", "LineageError", "LocalRunStatusSource", "NotFoundError",
    "Pending", "ReadOnlyStoreError", "RecoveryMonitor", "RecoveryResult", "RetryPolicy",
    "RunExistsError", "RunFinishedError", "RunHandle", "RunNotFoundError", "RunView", "Settings",
    "StepGapError", "StoreError", "Tracker", "ValidationError", "WriterError", "__version__",
]


def test_public_api_is_pinned() -> None:
    assert sorted(lineage.__all__) == sorted(PINNED)
    for name in lineage.__all__:
        assert hasattr(lineage, name), name


def test_every_error_is_a_lineage_error() -> None:
    for name in lineage.__all__:
        value = getattr(lineage, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, lineage.LineageError), name
