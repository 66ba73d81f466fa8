"""The Alias aggregate: a movable name (``latest``, ``best``, custom) for one artifact.

An alias lives in a scope (a run id, or ``registry`` for names shared by the whole tenant). Its
stream is its history: every move is one event, so "what did ``best`` point to on Tuesday" is a
replay. Protected aliases cannot be moved away from their artifact without ``force``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from lineage.domain.envelope import Envelope, EnvelopedEvent
from lineage.errors import InvariantError


class Alias(Aggregate):
    class Event(EnvelopedEvent):
        pass

    class Created(Event, Aggregate.Created):
        scope: str
        name: str

    class Moved(Event):
        artifact_id: UUID
        previous_artifact_id: UUID | None
        protected: bool

        def apply(self, alias: Alias) -> None:
            alias.artifact_id = self.artifact_id
            alias.protected = self.protected

    def __init__(self, scope: str, name: str) -> None:
        self.scope = scope
        self.name = name
        self.artifact_id: UUID | None = None
        self.protected = False

    @classmethod
    def create(cls, alias_id: UUID, scope: str, name: str, envelope: Envelope,
               timestamp: datetime) -> Alias:
        return cls._create(cls.Created, id=alias_id, scope=scope, name=name,
                           timestamp=timestamp, **envelope.fields())

    def move(self, artifact_id: UUID, protected: bool, force: bool, envelope: Envelope,
             timestamp: datetime) -> None:
        if self.artifact_id == artifact_id and self.protected == protected:
            return
        if self.protected and self.artifact_id != artifact_id and not force:
            raise InvariantError(
                f"alias {self.name!r} in {self.scope} is protected on {self.artifact_id}; "
                "pass force=True to move it"
            )
        self.trigger_event(self.Moved, artifact_id=artifact_id,
                           previous_artifact_id=self.artifact_id, protected=protected,
                           timestamp=timestamp, **envelope.fields())
