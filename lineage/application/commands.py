"""Command handlers shared by the API objects, and coercion of the ids callers pass.

A handler runs on the writer thread against a UnitOfWork: load, call the domain, return a value.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from lineage.application.unit_of_work import UnitOfWork
from lineage.domain import Alias, Artifact, ids
from lineage.errors import ValidationError


def register_in(uow: UnitOfWork, artifact_id: UUID, fields: dict[str, Any]) -> UUID:
    """Register unless it already exists (same uri, content, run and step: the same id): then
    it is a no-op, or ArtifactExistsError, storing nothing, when ``fields`` change one of its
    details (``Artifact.require_registered_as``).

    A parent is pinned (retention keeps it) unless the new artifact is the next checkpoint of
    the parent's own run: what another run or a model derives from must not lose its bytes.
    """
    existing = uow.find_artifact(artifact_id)
    if existing is not None:
        existing.require_registered_as(fields)
    else:
        parents = [uow.artifact(parent) for parent in fields["parents"]]
        if fields["run_id"] is not None:
            uow.run(fields["run_id"])
        uow.add(Artifact.register(artifact_id, fields, uow.envelope(), uow.timestamp))
        for parent in parents:
            if fields["type"] == "checkpoint" and fields["run_id"] == parent.run_id:
                continue
            made_by = "" if fields["run_id"] is None else f" of run {fields['run_id']}"
            parent.pin(f"derived:{artifact_id}", f"{fields['type']} {artifact_id}{made_by} "
                       "derives from it", uow.envelope(), uow.timestamp)
    return artifact_id


def move_alias_in(uow: UnitOfWork, artifact_id: UUID, scope: str, name: str,
                  protected: bool, force: bool, keep: bool = False) -> None:
    """Point the alias at ``artifact_id``. A protected alias (or one moved with ``keep``, as
    the ``best`` alias is) pins its artifact against retention; the pin follows the alias."""
    artifact = uow.artifact(artifact_id)
    artifact.require_live(f"alias {name!r}")
    alias_id = ids.alias_id(artifact.tenant_id, scope, name)
    alias = uow.find_alias(alias_id)
    if alias is None:
        alias = uow.add(Alias.create(alias_id, scope, name, uow.envelope(), uow.timestamp))
    previous = alias.artifact_id
    alias.move(artifact_id, protected, force, uow.envelope(), uow.timestamp)
    key = alias_pin(scope, name)
    if previous is not None and previous != artifact_id:
        before = uow.find_artifact(previous)
        if before is not None:
            before.unpin(key, uow.envelope(), uow.timestamp)
    if protected or keep:
        kind = "protected alias" if protected else "alias"
        artifact.pin(key, f"{kind} {name!r} in {scope}", uow.envelope(), uow.timestamp)
    else:
        artifact.unpin(key, uow.envelope(), uow.timestamp)


def alias_pin(scope: str, name: str) -> str:
    """The pin key an alias puts on the artifact it keeps."""
    return f"alias:{scope}:{name}"


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
