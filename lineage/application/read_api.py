"""The Tracker's read-model queries: traces, registry, lineage graph, audit (DESIGN §5).

The read models (``lineage.projections``, on the store's own database) are pushed in by the
composition root as ``views``; these methods flush the writer, let the projections catch up to
the head, then ask them. Results are
plain dicts and lists, ready for JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from lineage.application.commands import id_of
from lineage.application.views import ArtifactView
from lineage.ports import ReadModelsPort


class ReadAPI:
    views: ReadModelsPort

    def flush(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def trace(self, run: Any, *, format: str = "lineageir") -> dict[str, Any]:
        """The run's LineageIR graph (``format="nested"`` for the seed's nested shape)."""
        self.flush()
        return dict(self.views.trace(str(id_of(run, "run")), shape=format))

    def artifacts(self, *, type: str | None = None, run: Any = None, alias: str | None = None,
                  checksum: str | None = None, since: Any = None, until: Any = None,
                  as_of: Any = None, status: str | None = None, limit: int = 100,
                  offset: int = 0) -> list[ArtifactView]:
        """The registry, oldest first, filtered; ``as_of`` (a time or a notification position)
        gives it as it was then (what was registered, its status and aliases then)."""
        self.flush()
        run_id = None if run is None else str(id_of(run, "run"))
        rows = self.views.artifacts(type=type, run=run_id, alias=alias, checksum=checksum,
                                    since=since, until=until, as_of=as_of, status=status,
                                    limit=limit, offset=offset)
        return [_artifact_view(row) for row in rows]

    def lineage(self, node: Any, *, direction: str = "up", depth: int = 20) -> dict[str, Any]:
        """Ancestors / descendants of an artifact or run (one recursive SQL query per walk)."""
        self.flush()
        return dict(self.views.lineage(str(id_of(node, "artifact")), direction=direction, depth=depth))

    def audit(self, *, subject: Any = None, actor: str | None = None, kind: str | None = None,
              since: Any = None, until: Any = None, include_steps: bool = False, after: int = 0,
              limit: int = 100) -> list[dict[str, Any]]:
        """Who did what and when (one row per event), oldest first, paged by ``after``."""
        self.flush()
        subject_id = None if subject is None else str(id_of(subject, "subject"))
        return list(self.views.audit(subject=subject_id, actor=actor, kind=kind, since=since,
                                     until=until, include_steps=include_steps, after=after,
                                     limit=limit))

    def alias_history(self, name: str, *, scope: Any = None) -> list[dict[str, Any]]:
        self.flush()
        return list(self.views.alias_history(name, scope=None if scope is None else str(scope)))

    def metric_history(self, run: Any, name: str) -> list[tuple[int, float]]:
        self.flush()
        return list(self.views.metric_history(str(id_of(run, "run")), name))


def _artifact_view(row: dict[str, Any]) -> ArtifactView:
    return ArtifactView(
        id=UUID(row["id"]), type=row["type"], uri=row["uri"], name=row["name"], size=row["size"],
        checksum_algorithm=row["checksum_algorithm"], checksum=row["checksum"],
        format=row["format"], run_id=UUID(row["run_id"]) if row["run_id"] else None,
        step=row["step"], parents=[UUID(p) for p in row["parents"]], status=row["status"],
        registered_at=datetime.fromisoformat(row["registered_at"]), metadata=row["metadata"],
        includes_optimizer=row["includes_optimizer"], aliases=row["aliases"],
    )
