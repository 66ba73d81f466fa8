"""Read models built from the notification log (installed as ``lineage.projections``).

One class per read model (STYLE habit 7); ``ProjectionRunner`` runs them exactly once and
resumably; ``ReadModels`` answers queries from their tables.
"""

from __future__ import annotations

from lineage.projections.audit import AuditProjection
from lineage.projections.decoding import Projection
from lineage.projections.edges import EdgeProjection
from lineage.projections.metrics import StepMetricsProjection
from lineage.projections.registry import RegistryProjection
from lineage.projections.runner import ProjectionRunner
from lineage.projections.traces import TraceProjection


def all_projections() -> list[Projection]:
    return [TraceProjection(), RegistryProjection(), EdgeProjection(), AuditProjection(),
            StepMetricsProjection()]


__all__ = ["Projection", "ProjectionRunner", "all_projections"]
