"""Command handlers shared by the API objects, and coercion of the ids callers pass.

A handler runs on the writer thread against a UnitOfWork: load, call the domain, return a value.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from lineage.domain import Alias, Artifact, ids
from lineage.errors import ValidationError
from lineage.unit_of_work import UnitOfWork


def register_in(uow: UnitOfWork, artifact_id: UUID, fields: dict[str, Any]) -> UUID:
    """Register unless it already exists (same content or uri): then it is a no-op."""
    if uow.find_artifact(artifact_id) is None:
        for parent in fields["parents"]:
            uow.artifact(parent)
        if fields["run_id"] is not None:
            uow.run(fields["run_id"])
        uow.add(Artifact.register(artifact_id, fields, uow.envelope(), uow.timestamp))
    return artifact_id


def move_alias_in(uow: UnitOfWork, artifact_id: UUID, scope: str, name: str,
                  protected: bool, force: bool) -> None:
    artifact = uow.artifact(artifact_id)
    artifact.require_live(f"alias {name!r}")
    alias_id = ids.alias_id(artifact.tenant_id, scope, name)
    alias = uow.find_alias(alias_id)
    if alias is None:
        alias = uow.add(Alias.create(alias_id, scope, name, uow.envelope(), uow.timestamp))
    alias.move(artifact_id, protected, force, uow.envelope(), uow.timestamp)


def as_uuid(value: Any, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise ValidationError(field, f"is not a UUID: {value!r}") from None


def id_of(value: Any, field: str) -> UUID:
    """The id of a handle/ref (anything with ``.id``), a UUID, or a UUID string."""
    if not isinstance(value, UUID | str) and hasattr(value, "id"):
        value = value.id
    return as_uuid(value, field)
