"""The Artifact aggregate: one registry entry (checkpoint, model, dataset or log).

Retention (DESIGN §7) needs to know, inside this aggregate, what must never be retired, so the
rule holds under concurrent writers (optimistic concurrency on this stream): a ``Pinned`` event
records each reason to keep it (a protected alias or the ``best`` alias on it, a run that
resumed from it, an artifact derived from it), ``Unpinned`` removes one when an alias moves
away. A retirement by policy refuses a pinned artifact. Deleting the bytes comes after the
retirement and is recorded by ``DeletionRecorded`` with its outcome.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from lineage.domain.envelope import Envelope, EnvelopedEvent
from lineage.errors import ArtifactExistsError, ArtifactRetiredError, InvariantError

# Outcomes of deleting a retired artifact's bytes. "failed" is retried by the next repair;
# "in_use": kept, because a live artifact records the same bytes at the same uri.
DELETION_OUTCOMES = ("deleted", "already_gone", "remote", "content_changed", "in_use", "failed")

# What a second registration of the same artifact may state again but not change (uri,
# checksum, run and step make the id, so they cannot differ).
RESTATED = ("type", "name", "format", "step", "includes_optimizer", "size", "metadata")


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

    class Retired(Event):
        reason: str
        policy: str | None

        def apply(self, artifact: Artifact) -> None:
            artifact.status = "retired"

    class Expired(Event):
        """The bytes are gone where they live, by no decision of ours: a service's TTL ran out,
        or someone deleted them there (``Artifact.expire``; status ``expired``)."""

        reason: str

        def apply(self, artifact: Artifact) -> None:
            artifact.status = "expired"

    class Pinned(Event):
        key: str
        reason: str

        def apply(self, artifact: Artifact) -> None:
            artifact.pins[self.key] = self.reason

    class Unpinned(Event):
        key: str

        def apply(self, artifact: Artifact) -> None:
            artifact.pins.pop(self.key, None)

    class DeletionRecorded(Event):
        outcome: str
        detail: str

        def apply(self, artifact: Artifact) -> None:
            artifact.deletion = self.outcome

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
        self.pins: dict[str, str] = {}
        self.deletion: str | None = None

    @classmethod
    def register(cls, artifact_id: UUID, fields: dict[str, Any], envelope: Envelope,
                 timestamp: datetime) -> Artifact:
        return cls._create(cls.Registered, id=artifact_id, timestamp=timestamp, **fields,
                           **envelope.fields())

    def require_registered_as(self, fields: dict[str, Any]) -> None:
        """Raise ArtifactExistsError when ``fields`` (a registration of this same artifact)
        give another value for one of ``RESTATED``; a field left out (None, or no metadata)
        is not compared. Parents given again are not compared either: the lineage recorded
        at the first registration stands."""
        for name in RESTATED:
            given, stored = fields.get(name), getattr(self, name)
            if given is None or (name == "metadata" and not given):
                continue
            if _canonical(given) != _canonical(stored):
                raise ArtifactExistsError(self.id, self.uri, name, stored, given)

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

    @property
    def needs_deletion(self) -> bool:
        """Retired, and its bytes not yet dealt with (never tried, or the last try failed)."""
        return self.status == "retired" and self.deletion in (None, "failed")

    def retire(self, reason: str, policy: str | None, envelope: Envelope,
               timestamp: datetime) -> None:
        """Retire the artifact. A retirement by ``policy`` refuses a pinned artifact; one by
        hand (``policy`` None) is the user's decision."""
        if self.status == "retired":
            return
        self.require_live("retirement")
        if policy is not None and self.pins:
            raise InvariantError(f"artifact {self.id} must be kept: "
                                 f"{'; '.join(self.pins.values())}")
        self.trigger_event(self.Retired, reason=reason, policy=policy, timestamp=timestamp,
                           **envelope.fields())

    def expire(self, reason: str, envelope: Envelope, timestamp: datetime) -> bool:
        """Record that the bytes are gone where they live (observed, not decided: pins do not
        apply). Idempotent: False, recording nothing, when already expired or retired."""
        if self.status != "live":
            return False
        self.trigger_event(self.Expired, reason=reason, timestamp=timestamp, **envelope.fields())
        return True

    def pin(self, key: str, reason: str, envelope: Envelope, timestamp: datetime) -> None:
        """Record a reason to keep this artifact (idempotent per ``key``)."""
        if key in self.pins:
            return
        self.trigger_event(self.Pinned, key=key, reason=reason, timestamp=timestamp,
                           **envelope.fields())

    def unpin(self, key: str, envelope: Envelope, timestamp: datetime) -> None:
        if key not in self.pins:
            return
        self.trigger_event(self.Unpinned, key=key, timestamp=timestamp, **envelope.fields())

    def record_deletion(self, outcome: str, detail: str, envelope: Envelope,
                        timestamp: datetime) -> None:
        """Record what deleting the bytes of this retired artifact did. A no-op once an
        outcome other than ``failed`` is recorded (deletion is idempotent)."""
        if outcome not in DELETION_OUTCOMES:
            raise InvariantError(f"unknown deletion outcome {outcome!r}")
        if self.status == "live":
            raise InvariantError(f"artifact {self.id} is live: only a retired artifact's "
                                 "bytes are deleted")
        if not self.needs_deletion:
            return
        self.trigger_event(self.DeletionRecorded, outcome=outcome, detail=detail,
                           timestamp=timestamp, **envelope.fields())


def _canonical(value: Any) -> str:
    """A value as comparable text (NaN equals NaN; key order does not matter)."""
    return json.dumps(value, sort_keys=True, allow_nan=True, default=str)
