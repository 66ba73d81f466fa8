"""Deterministic ids for things the outside world names (DESIGN §3).

uuid5 over a fixed namespace, so registering the same file content, the same remote uri or the
same job key twice gives the same id, and the second write is a no-op.
"""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c8a52-8d0e-4c55-9a55-3a0b7c1e0d11")


def artifact_id_for_content(tenant_id: str, algorithm: str, digest: str) -> UUID:
    return uuid5(NAMESPACE, f"artifact-content:{tenant_id}:{algorithm}:{digest}")


def artifact_id_for_uri(tenant_id: str, uri: str) -> UUID:
    return uuid5(NAMESPACE, f"artifact-uri:{tenant_id}:{uri}")


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
