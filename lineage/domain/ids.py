"""Deterministic ids for things the outside world names (DESIGN §3).

uuid5 over a fixed namespace, so registering the same artifact, or starting a run with the same
job key, twice gives the same id, and the second write is a no-op.
"""

from __future__ import annotations

import json
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c8a52-8d0e-4c55-9a55-3a0b7c1e0d11")


def artifact_id(tenant_id: str, uri: str, checksum: tuple[str, str] | None,
                run_id: UUID | None, step: int | None) -> UUID:
    """The id of an artifact: where it is (``uri``), what it holds (``checksum``: algorithm,
    digest) and who produced it (``run_id``, ``step``). Never the content alone: two runs'
    checkpoints are two artifacts whatever their bytes (the registry finds equal bytes by
    checksum instead), and the same bytes at two uris are two artifacts.

    A uri with nothing else known keeps the id such artifacts always had. Stores written
    before this rule hold artifacts under content-only ids; those ids keep working (an id is
    only ever looked up, never re-derived from a stored artifact).
    """
    if checksum is None and run_id is None and step is None:
        return uuid5(NAMESPACE, f"artifact-uri:{tenant_id}:{uri}")
    algorithm, digest = checksum if checksum is not None else (None, None)
    key = json.dumps([tenant_id, uri, algorithm, digest,
                      None if run_id is None else str(run_id), step])
    return uuid5(NAMESPACE, f"artifact:{key}")


def run_id_for_key(tenant_id: str, job_key: str) -> UUID:
    return uuid5(NAMESPACE, f"run-key:{tenant_id}:{job_key}")


def step_stream_id(run_id: UUID) -> UUID:
    """The id of a run's step log stream (one append-only stream per run)."""
    return uuid5(run_id, "steps")


def alias_id(tenant_id: str, scope: str, name: str) -> UUID:
    return uuid5(NAMESPACE, f"alias:{tenant_id}:{scope}:{name}")


def heartbeat_stream_id(run_id: UUID) -> UUID:
    """The id of a run's heartbeat stream (written while the run is open and idle)."""
    return uuid5(run_id, "heartbeats")
