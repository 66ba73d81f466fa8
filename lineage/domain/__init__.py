"""The domain: aggregates (Run, Artifact, Alias), the step log event, deterministic ids.

Event classes are stored by topic (``module:QualName``). These module names are part of the
stored format: moving or renaming an event class needs a registered old topic or an upcaster.
"""

from __future__ import annotations

from lineage.domain.alias import Alias
from lineage.domain.artifact import Artifact
from lineage.domain.envelope import Envelope
from lineage.domain.run import Run
from lineage.domain.steps import StepRecorded

__all__ = ["Alias", "Artifact", "Envelope", "Run", "StepRecorded"]
