"""What a remote service says about artifacts it holds, recorded as status changes.

A ``tinker://`` checkpoint can vanish by no decision of ours: its TTL ran out, or someone
deleted it with the service's CLI. ``mark_expired`` records ``Artifact.Expired`` with the reason
(status ``expired``), so recovery skips it and the registry says why; ``mark_deleted``
records a deletion the user asked the service for (``Retired`` by hand, bytes ``deleted``);
``record_remote_change`` records one that leaves the artifact usable (published,
unpublished, its TTL set), read back with ``remote_changes``.
"""

from __future__ import annotations

from typing import Any

from lineage.application import validation
from lineage.application.commands import id_of
from lineage.application.inference import InferenceHost
from lineage.application.unit_of_work import UnitOfWork
from lineage.domain.remote_state import (
    REMOTE_CHANGES,
    RemoteStateChanged,
    remote_state_stream_id,
)


def mark_expired(host: InferenceHost, artifact: Any, reason: str) -> Any:
    """Queue ``Expired`` on ``artifact``; the Pending resolves to True when recorded, False
    when it was already expired or retired (idempotent)."""
    artifact_id = id_of(artifact, "artifact")
    text = validation.text(reason, "reason", max_length=validation.TEXT_MAX, multiline=True)

    def expire(uow: UnitOfWork) -> bool:
        return bool(uow.artifact(artifact_id).expire(text, uow.envelope(), uow.timestamp))

    return host.submit(f"expire {artifact_id}", expire, host.envelope())


def mark_deleted(host: InferenceHost, artifact: Any, reason: str) -> Any:
    """Queue what deleting the artifact's bytes where they live, by hand, means: ``Retired``
    (policy None: the user's decision) and ``DeletionRecorded(deleted)``. The Pending resolves
    to False, recording nothing, when it was no longer live."""
    artifact_id = id_of(artifact, "artifact")
    text = validation.text(reason, "reason", max_length=validation.TEXT_MAX, multiline=True)

    def delete(uow: UnitOfWork) -> bool:
        found = uow.artifact(artifact_id)
        if not found.live:
            return False
        found.retire(text, None, uow.envelope(), uow.timestamp)
        found.record_deletion("deleted", text, uow.envelope(), uow.timestamp)
        return True

    return host.submit(f"deleted {artifact_id}", delete, host.envelope())



def record_remote_change(host: InferenceHost, artifact: Any, change: str,
                         detail: dict[str, Any] | None = None) -> Any:
    """Queue ``RemoteStateChanged`` (``change``: published, unpublished, ttl_set) on
    ``artifact``'s remote-state stream; returns the Pending. Raises ValidationError naming the
    field before anything is queued."""
    artifact_id = id_of(artifact, "artifact")
    kind = validation.choice(change, "change", REMOTE_CHANGES)
    fields = {"artifact_id": artifact_id, "change": kind,
              "detail": validation.json_object(detail, "detail")}
    stream = remote_state_stream_id(artifact_id)

    def record(uow: UnitOfWork) -> None:
        found = uow.artifact(artifact_id)  # must exist
        uow.log(RemoteStateChanged(**{"originator_id": stream, "timestamp": uow.timestamp,
                                      "originator_version": uow.next_log_version(stream),
                                      "uri": found.uri, **fields, **uow.envelope().fields()}))

    return host.submit(f"{kind} {artifact_id}", record, host.envelope())


def remote_changes(host: InferenceHost, artifact: Any) -> list[RemoteStateChanged]:
    """The remote state changes recorded on ``artifact``, oldest first."""
    stream = remote_state_stream_id(id_of(artifact, "artifact"))
    return [host.mapper.to_domain_event(stored) for stored in host.store.read_stream(stream)]
