"""The Artifact aggregate: one registry entry (checkpoint, model, dataset or log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from lineage.domain.envelope import Envelope, EnvelopedEvent
from lineage.errors import ArtifactRetiredError


class Artifact(Aggregate):
    class Event(EnvelopedEvent):
        pass

    class Registered(Event, Aggregate.Created):
        type: str
        uri: str
        name: str | None
        size: int | None
        checksum_algorithm: str | None
        checksum: str | None
        format: str | None
        run_id: UUID | None
        step: int | None
        parents: list[UUID]
        includes_optimizer: bool | None
        metadata: dict[str, Any]

    class Verified(Event):
        ok: bool
        observed_checksum: str | None
        detail: str

        def apply(self, artifact: Artifact) -> None:
            artifact.last_verified_ok = self.ok

    class Retired(Event):
        reason: str
        policy: str | None

        def apply(self, artifact: Artifact) -> None:
            artifact.status = "retired"

    class Expired(Event):
        reason: str

        def apply(self, artifact: Artifact) -> None:
            artifact.status = "expired"

    def __init__(self, type: str, uri: str, name: str | None, size: int | None,
                 checksum_algorithm: str | None, checksum: str | None, format: str | None,
                 run_id: UUID | None, step: int | None, parents: list[UUID],
                 includes_optimizer: bool | None, metadata: dict[str, Any],
                 tenant_id: str) -> None:
        self.type = type
        self.uri = uri
        self.name = name
        self.size = size
        self.checksum_algorithm = checksum_algorithm
        self.checksum = checksum
        self.format = format
        self.run_id = run_id
        self.step = step
        self.parents = parents
        self.includes_optimizer = includes_optimizer
        self.metadata = metadata
        self.tenant_id = tenant_id
        self.status = "live"
        self.last_verified_ok: bool | None = None

    @classmethod
    def register(cls, artifact_id: UUID, fields: dict[str, Any], envelope: Envelope,
                 timestamp: datetime) -> Artifact:
        return cls._create(cls.Registered, id=artifact_id, timestamp=timestamp, **fields,
                           **envelope.fields())

    @property
    def live(self) -> bool:
        return self.status == "live"

    def require_live(self, what: str) -> None:
        if not self.live:
            raise ArtifactRetiredError(self.id, what)

    def verify(self, ok: bool, observed_checksum: str | None, detail: str, envelope: Envelope,
               timestamp: datetime) -> None:
        self.trigger_event(self.Verified, ok=ok, observed_checksum=observed_checksum,
                           detail=detail, timestamp=timestamp, **envelope.fields())

    def retire(self, reason: str, policy: str | None, envelope: Envelope,
               timestamp: datetime) -> None:
        if self.status == "retired":
            return
        self.require_live("retirement")
        self.trigger_event(self.Retired, reason=reason, policy=policy, timestamp=timestamp,
                           **envelope.fields())

    def expire(self, reason: str, envelope: Envelope, timestamp: datetime) -> None:
        if self.status == "expired":
            return
        self.trigger_event(self.Expired, reason=reason, timestamp=timestamp, **envelope.fields())
