"""What a remote service holding an artifact says changed about it, by no step of a run: a
``tinker://`` checkpoint published or unpublished, its TTL set or cleared.

One append-only stream per artifact (``remote_state_stream_id``), like inference records:
kept out of the Artifact aggregate's stream (replayed on every load), read back as a list.
Expiry and deletion are the Artifact's own events (``Expired``, ``Retired`` +
``DeletionRecorded``): they change what the artifact is good for.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from lineage.domain.envelope import LogEvent

REMOTE_CHANGES = ("published", "unpublished", "ttl_set")


def remote_state_stream_id(artifact_id: UUID) -> UUID:
    """The id of the stream of remote state changes of an artifact."""
    return uuid5(artifact_id, "remote-state")


class RemoteStateChanged(LogEvent):
    artifact_id: UUID
    uri: str
    change: str  # one of REMOTE_CHANGES
    detail: dict[str, Any]  # e.g. ttl_seconds and expires_at for ttl_set; "via"
