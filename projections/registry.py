"""The artifact registry: artifacts, their status history, aliases (current and history)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from lineage.codec.dispatch import handles
from lineage.domain import Alias, Artifact
from lineage.projections.decoding import Dispatching, dumps, loads
from lineage.projections.tables import alias_history, aliases, artifact_history, artifacts
from lineage.timestamps import iso


class RegistryProjection(Dispatching):
    name = "registry"
    tables = (artifacts, artifact_history, aliases, alias_history)

    @handles(Artifact.Registered)
    def _Artifact_Registered(self, conn: Connection, position: int, e: Artifact.Registered) -> None:
        artifact_id = str(e.originator_id)
        conn.execute(artifacts.insert().values(
            id=artifact_id, tenant_id=e.tenant_id, type=e.type, uri=e.uri, name=e.name,
            size=e.size, checksum_algorithm=e.checksum_algorithm, checksum=e.checksum,
            format=e.format, run_id=str(e.run_id) if e.run_id else None, step=e.step,
            includes_optimizer=e.includes_optimizer, status="live", status_reason=None,
            verified=None, pins="{}", deletion=None, metadata=dumps(e.metadata),
            registered_at=iso(e.occurred_at), actor=e.actor, position=position))
        _change(conn, position, artifact_id, e, "registered")

    @handles(Artifact.Verified)
    def _Artifact_Verified(self, conn: Connection, position: int, e: Artifact.Verified) -> None:
        _change(conn, position, str(e.originator_id), e,
                f"verified: {'checksum ok' if e.ok else 'checksum MISMATCH'}", verified=e.ok)

    @handles(Artifact.Retired)
    def _Artifact_Retired(self, conn: Connection, position: int, e: Artifact.Retired) -> None:
        reason = f"{e.reason} ({e.policy})" if e.policy else e.reason
        _change(conn, position, str(e.originator_id), e, reason, status="retired",
                status_reason=reason)

    @handles(Artifact.Expired)
    def _Artifact_Expired(self, conn: Connection, position: int, e: Artifact.Expired) -> None:
        _change(conn, position, str(e.originator_id), e, e.reason, status="expired",
                status_reason=e.reason)

    @handles(Artifact.Pinned)
    def _Artifact_Pinned(self, conn: Connection, position: int, e: Artifact.Pinned) -> None:
        pins = {**self._pins(conn, str(e.originator_id)), e.key: e.reason}
        _change(conn, position, str(e.originator_id), e, f"pinned: {e.reason}", pins=dumps(pins))

    @handles(Artifact.Unpinned)
    def _Artifact_Unpinned(self, conn: Connection, position: int, e: Artifact.Unpinned) -> None:
        pins = {k: v for k, v in self._pins(conn, str(e.originator_id)).items() if k != e.key}
        _change(conn, position, str(e.originator_id), e, f"unpinned: {e.key}", pins=dumps(pins))

    def _pins(self, conn: Connection, artifact_id: str) -> dict[str, str]:
        found: dict[str, str] = loads(conn.execute(
            select(artifacts.c.pins).where(artifacts.c.id == artifact_id)).scalar())
        return found

    @handles(Artifact.DeletionRecorded)
    def _Artifact_DeletionRecorded(self, conn: Connection, position: int,
                                   e: Artifact.DeletionRecorded) -> None:
        _change(conn, position, str(e.originator_id), e, f"bytes {e.outcome}: {e.detail}"[:500],
                deletion=e.outcome)

    @handles(Alias.Created)
    def _Alias_Created(self, conn: Connection, position: int, e: Alias.Created) -> None:
        conn.execute(aliases.insert().values(
            alias_id=str(e.originator_id), scope=e.scope, name=e.name, artifact_id=None,
            protected=False, moved_at=None, position=position))

    @handles(Alias.Moved)
    def _Alias_Moved(self, conn: Connection, position: int, e: Alias.Moved) -> None:
        alias_id = str(e.originator_id)
        at = iso(e.occurred_at)
        row = conn.execute(select(aliases.c.scope, aliases.c.name)
                           .where(aliases.c.alias_id == alias_id)).one()
        conn.execute(update(aliases).where(aliases.c.alias_id == alias_id).values(
            artifact_id=str(e.artifact_id), protected=e.protected, moved_at=at, position=position))
        conn.execute(alias_history.insert().values(
            position=position, alias_id=alias_id, scope=row.scope, name=row.name,
            artifact_id=str(e.artifact_id),
            previous_artifact_id=str(e.previous_artifact_id) if e.previous_artifact_id else None,
            protected=e.protected, moved_at=at, actor=e.actor))


MUTABLE = ("status", "status_reason", "verified", "pins", "deletion")


def _change(conn: Connection, position: int, artifact_id: str, e: Any, reason: str,
            **values: Any) -> None:
    """Apply ``values`` to the artifact's row and append the row's changeable state, as it now
    is, to its history: the registry as of any position is the last state at or before it."""
    if values:
        conn.execute(update(artifacts).where(artifacts.c.id == artifact_id).values(**values))
    row = conn.execute(select(*(artifacts.c[name] for name in MUTABLE))
                       .where(artifacts.c.id == artifact_id)).one()
    state = {name: getattr(row, name) for name in MUTABLE}
    state["pins"] = loads(state["pins"])
    conn.execute(artifact_history.insert().values(
        position=position, artifact_id=artifact_id, status=row.status, reason=reason,
        at=iso(e.occurred_at), state=dumps(state)))
