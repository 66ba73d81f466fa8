"""Stored events -> OpenLineage run events (spec 2-0-2), as plain JSON documents, purely.

=============================  ================================================================
stored event                   OpenLineage run event (runId = the run id; job = namespace and
                               the run's name)
=============================  ================================================================
``Run.Started``                ``START``: job facets ``jobType`` (BATCH / LINEAGE / TRAINING)
                               and ``lineage_job`` (the job spec); run facet ``lineage_run``
``Run.InputUsed``              ``RUNNING`` with the input (a dataset, or the base model)
``Run.CheckpointSaved``        ``RUNNING`` with the checkpoint as an output dataset
``Artifact.Registered`` (a     ``OTHER`` (whether or not the run has finished: the same event
model or log of a run)         on every export) with the model or log as an output dataset
``Run.Finished`` (the first)   ``COMPLETE`` (completed), ``FAIL`` (failed, superseded: with
                               ``errorMessage``) or ``ABORT`` (cancelled), with every input and
                               output of the run and ``lineage_steps`` / ``lineage_recovery``
``Artifact.Retired`` /         ``OTHER`` on the run that saved the artifact: the output with
``DeletionRecorded``           ``lineage_retention``, and ``lifecycleStateChange`` DROP once
                               its bytes are deleted
=============================  ================================================================

A resumed run's events (all of them, from ``START``) carry the spec's ``parent`` run facet: the
run it resumed (``Run.ResumedFrom``, committed in one transaction with its ``Run.Started``, so
``START`` has it on every export) as parent and the first run of the resume chain as root,
as LineageIR's ``parent_trace_id`` / ``root_trace_id`` have them. The run it superseded says
so in ``lineage_recovery.supersededBy`` (the spec has no facet pointing forward).

Datasets: ``s3://bucket/path`` is namespace ``s3://bucket``, name ``path`` (OpenLineage's
naming); a plain path is namespace ``file``. Facets: ``version`` (``datasetVersion``: the
checksum, else the artifact id), ``lifecycleStateChange``, and ``lineage_artifact`` (id, type,
checksum, size, format, step). Every value comes from the stored events at or before the one
that makes the event (its own time is ``eventTime``), so a re-export gives identical events.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from lineage.codec.dispatch import Dispatcher, handles, topic_of
from lineage.domain import Artifact, Run, ids
from lineage.ports import EventStore
from lineage.spans.assembly import remember
from lineage.version import __version__

SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PRODUCER = f"https://pypi.org/project/lineage/{__version__}"
OURS = "https://lineage.dev/spec/facets/1-0-0/{}.json#/$defs/{}"
_SPEC_FACETS = {
    "jobType": "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "version": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
               "#/$defs/DatasetVersionDatasetFacet",
    "lifecycleStateChange": "https://openlineage.io/spec/facets/1-0-1/"
                            "LifecycleStateChangeDatasetFacet.json"
                            "#/$defs/LifecycleStateChangeDatasetFacet",
    "errorMessage": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"
                    "#/$defs/ErrorMessageRunFacet",
    "parent": "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
}
_RESUMED = topic_of(Run.ResumedFrom)
_OUTCOME = {"completed": "COMPLETE", "cancelled": "ABORT", "failed": "FAIL", "superseded": "FAIL"}


def facet(name: str, **fields: Any) -> dict[str, Any]:
    """A facet: the spec's own (``name`` in ``_SPEC_FACETS``) or one of ours (``lineage_*``)."""
    url = _SPEC_FACETS.get(name)
    if url is None:
        title = "".join(part.title() for part in name.split("_")) + "Facet"
        url = OURS.format(title, title)
    return {"_producer": PRODUCER, "_schemaURL": url,
            **{key: value for key, value in fields.items() if value is not None}}


def dataset(uri: str, facets: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(uri)
    if parts.scheme and parts.scheme != "file":
        namespace = f"{parts.scheme}://{parts.netloc}" if parts.netloc else parts.scheme
        name = parts.path.lstrip("/") or parts.netloc
    else:
        namespace, name = "file", parts.path or uri
    return {"namespace": namespace, "name": name, "facets": facets}


def _time(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class OpenLineageBuilder(Dispatcher):
    """Builds the OpenLineage events of stored events (module doc). One per thread."""

    def __init__(self, store: EventStore, mapper: Mapper, namespace: str = "lineage") -> None:
        self.store = store
        self.mapper = mapper
        self.namespace = namespace
        self._handlers = self.topics()
        self._previous: OrderedDict[UUID, UUID | None] = OrderedDict()  # run -> run it resumed
        self._parents: OrderedDict[UUID, dict[str, Any] | None] = OrderedDict()  # run -> facet
        # (stream, version, error) of the events ``_history`` passed over, for the runner
        self.unreadable: deque[tuple[UUID, int, Exception]] = deque(maxlen=1000)

    def build(self, events: Sequence[StoredEvent]) -> list[list[dict[str, Any]]]:
        """For each stored event, the OpenLineage events it makes (often none)."""
        return [self._handlers[s.topic](s) if s.topic in self._handlers else [] for s in events]

    def _history(self, run_id: UUID, upto: int) -> list[Any]:
        """The run's first ``upto`` events (versions 1, 2, ...), less any that does not decode
        (noted in ``unreadable``, so that one poisoned event does not take its run's later
        events with it)."""
        history = []
        for stored in self.store.read_stream(run_id, limit=upto):
            try:
                history.append(self.mapper.to_domain_event(stored))
            except Exception as error:  # a poisoned event: passed over and recorded (see above)
                if stored.originator_version == 1:
                    raise  # no start, no job to name: the event cannot be built
                self.unreadable.append((run_id, stored.originator_version, error))
        return history

    def _registered(self, artifact_id: UUID) -> Any:
        first = self.store.read_stream(artifact_id, limit=1)
        event: Any = self.mapper.to_domain_event(first[0]) if first else None
        return event if isinstance(event, Artifact.Registered) else None

    def _event(self, kind: str, at: datetime, history: list[Any], *, inputs: Sequence[Any] = (),
               outputs: Sequence[Any] = (), run_facets: dict[str, Any] | None = None,
               job_facets: dict[str, Any] | None = None) -> dict[str, Any]:
        started = history[0]
        parent = self._parent(started.originator_id)
        facets = {**(run_facets or {}), **({"parent": parent} if parent else {})}
        return {"eventType": kind, "eventTime": _time(at), "producer": PRODUCER,
                "schemaURL": SCHEMA,
                "run": {"runId": str(started.originator_id), "facets": facets},
                "job": {"namespace": self.namespace, "name": started.name,
                        "facets": job_facets or {}},
                "inputs": list(inputs), "outputs": list(outputs)}

    def _parent(self, run_id: UUID) -> dict[str, Any] | None:
        """The ``parent`` facet of a resumed run (module doc), else None (cached: the chain of
        a started run never changes)."""
        if run_id not in self._parents:
            remember(self._parents, run_id, self._parent_chain(run_id))
        return self._parents[run_id]

    def _parent_chain(self, run_id: UUID) -> dict[str, Any] | None:
        chain: list[tuple[UUID, str]] = []  # (run, job name), from the parent to the root
        current = self._resumed(run_id)
        while current is not None and current != run_id and len(chain) < 1000:
            first = self.store.read_stream(current, limit=1)
            started: Any = self.mapper.to_domain_event(first[0]) if first else None
            if not isinstance(started, Run.Started):
                break
            chain.append((current, started.name))
            current = self._resumed(current)
        if not chain:
            return None
        (parent, parent_job), (root, root_job) = chain[0], chain[-1]
        return facet("parent", run={"runId": str(parent)},
                     job={"namespace": self.namespace, "name": parent_job},
                     root={"run": {"runId": str(root)},
                           "job": {"namespace": self.namespace, "name": root_job}})

    def _resumed(self, run_id: UUID) -> UUID | None:
        """The run ``run_id`` resumed, if any (cached: it never changes once started)."""
        if run_id not in self._previous:
            resumed = next((s for s in self.store.read_stream(run_id) if s.topic == _RESUMED), None)
            event: Any = self.mapper.to_domain_event(resumed) if resumed is not None else None
            remember(self._previous, run_id, event.previous_run_id if event else None)
        return self._previous[run_id]

    def _artifact(self, artifact_id: UUID, uri: str, *, lifecycle: str | None = None,
                  **extra: Any) -> dict[str, Any]:
        registered = self._registered(artifact_id)
        facets: dict[str, Any] = {
            "version": facet("version", datasetVersion=(registered.checksum if registered
                                                        and registered.checksum else str(artifact_id))),
            "lineage_artifact": facet(
                "lineage_artifact", id=str(artifact_id),
                type=registered.type if registered else None,
                checksum=registered.checksum if registered else None,
                checksumAlgorithm=registered.checksum_algorithm if registered else None,
                size=registered.size if registered else None,
                format=registered.format if registered else None,
                step=registered.step if registered else None, **extra)}
        if lifecycle is not None:
            facets["lifecycleStateChange"] = facet("lifecycleStateChange",
                                                   lifecycleStateChange=lifecycle)
        return dataset(uri, facets)

    @handles(Run.Started)
    def _started(self, stored: StoredEvent) -> list[dict[str, Any]]:
        started: Any = self.mapper.to_domain_event(stored)
        return [self._event("START", started.occurred_at, [started], run_facets={
            "lineage_run": facet("lineage_run", tags=started.tags, startStep=started.start_step,
                                 tenant=started.tenant_id, actor=started.actor,
                                 source=started.source)}, job_facets={
            "jobType": facet("jobType", processingType="BATCH", integration="LINEAGE",
                             jobType="TRAINING"),
            "lineage_job": facet("lineage_job", spec=started.job)})]

    @handles(Run.InputUsed)
    def _input(self, stored: StoredEvent) -> list[dict[str, Any]]:
        event: Any = self.mapper.to_domain_event(stored)
        history = self._history(event.originator_id, 1)  # _event reads only its start
        return [self._event("RUNNING", event.occurred_at, history, inputs=[
            self._artifact(event.artifact_id, event.uri, role=event.role)])]

    @handles(Run.CheckpointSaved)
    def _checkpoint(self, stored: StoredEvent) -> list[dict[str, Any]]:
        event: Any = self.mapper.to_domain_event(stored)
        history = self._history(event.originator_id, 1)  # _event reads only its start
        return [self._event("RUNNING", event.occurred_at, history, outputs=[
            self._artifact(event.artifact_id, event.uri, lifecycle="CREATE")])]

    @handles(Artifact.Registered)
    def _registered_output(self, stored: StoredEvent) -> list[dict[str, Any]]:
        """A model or log registered for a run (checkpoints come with ``CheckpointSaved``)."""
        event: Any = self.mapper.to_domain_event(stored)
        if event.run_id is None or event.type == "checkpoint":
            return []
        history = self._history(event.run_id, 1)
        if not history or not isinstance(history[0], Run.Started):
            return []
        return [self._event("OTHER", event.occurred_at, history, outputs=[
            self._artifact(event.originator_id, event.uri, lifecycle="CREATE")])]

    @handles(Run.Finished)
    def _finished(self, stored: StoredEvent) -> list[dict[str, Any]]:
        event: Any = self.mapper.to_domain_event(stored)
        history = self._history(event.originator_id, stored.originator_version)
        if any(isinstance(e, Run.Finished) for e in history[:-1]):
            return []  # the outcome went out with the first Finished
        last = self.store.read_stream(ids.step_stream_id(event.originator_id), desc=True, limit=1)
        lost = [e for e in history if isinstance(e, Run.StepsLost)]
        resumed = next((e for e in history if isinstance(e, Run.ResumedFrom)), None)
        failures = [e for e in history if isinstance(e, Run.FailureDetected)]
        facets: dict[str, Any] = {
            "lineage_steps": facet("lineage_steps", count=last[0].originator_version if last else 0,
                                   lost=sum(e.count for e in lost)),
            "lineage_recovery": facet(
                "lineage_recovery", status=event.status, reason=event.reason,
                resumedFrom=str(resumed.previous_run_id) if resumed else None,
                supersededBy=str(event.superseded_by) if event.superseded_by else None,
                failures=len(failures))}
        kind = _OUTCOME.get(event.status, "OTHER")
        if kind == "FAIL":
            message = event.reason or (failures[-1].message if failures else event.status)
            facets["errorMessage"] = facet("errorMessage", message=message or event.status,
                                           programmingLanguage="python")
        inputs = [self._artifact(e.artifact_id, e.uri, role=e.role) for e in history
                  if isinstance(e, Run.InputUsed)]
        outputs = [self._artifact(e.artifact_id, e.uri) for e in history
                   if isinstance(e, Run.CheckpointSaved)]
        return [self._event(kind, event.occurred_at, history, inputs=inputs, outputs=outputs,
                            run_facets=facets)]

    @handles(Artifact.Retired, Artifact.DeletionRecorded)
    def _retention(self, stored: StoredEvent) -> list[dict[str, Any]]:
        event: Any = self.mapper.to_domain_event(stored)
        registered = self._registered(event.originator_id)
        if registered is None or registered.run_id is None:
            return []
        history = self._history(registered.run_id, 1)
        if not history or not isinstance(history[0], Run.Started):
            return []
        if isinstance(event, Artifact.Retired):
            output = self._artifact(event.originator_id, registered.uri,
                                    retired=event.reason, policy=event.policy)
        else:
            output = self._artifact(event.originator_id, registered.uri,
                                    lifecycle="DROP" if event.outcome == "deleted" else None,
                                    deletion=event.outcome)
        return [self._event("OTHER", event.occurred_at, history, outputs=[output])]
