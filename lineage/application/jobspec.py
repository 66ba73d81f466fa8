"""The training job spec a run starts with (TrainingIR-style), checked before it is stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage.application import validation
from lineage.application.policies import CheckpointPolicy, RetryPolicy
from lineage.errors import ValidationError

# Policy fields are checked by their policy class and stored in its full (defaulted) form.
POLICIES: dict[str, Any] = {"checkpoint_policy": CheckpointPolicy, "retry_policy": RetryPolicy}

# field -> kind; "mapping" fields may hold anything JSON-serialisable.
JOB_FIELDS: dict[str, str] = {
    "key": "text",  # a job key: runs started with the same key get the same run id
    "model": "text",
    "base_model": "text",
    "adapter": "mapping",  # e.g. {"type": "lora", "rank": 16, "alpha": 32}
    "learning": "mapping",  # e.g. {"learning_rate": 1e-4, "batch_size": 64, "epochs": 3}
    "datasets": "list",
    "checkpoint_policy": "mapping",
    "validation": "mapping",
    "resources": "mapping",
    "retry_policy": "mapping",
    "tenant": "text",
    "tags": "mapping",
    "metadata": "mapping",
}


def job_spec(value: Any) -> dict[str, Any]:
    """Return the job spec as stored (plain JSON), or raise ValidationError naming the field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("job", f"must be a mapping, not {type(value).__name__}")
    spec: dict[str, Any] = {}
    for name, item in value.items():
        kind = JOB_FIELDS.get(name)
        if kind is None:
            raise ValidationError(
                f"job.{name}", f"unknown field; expected one of {', '.join(JOB_FIELDS)}"
            )
        if item is None:
            continue
        if hasattr(item, "to_dict"):  # policy objects (CheckpointPolicy, RetryPolicy...)
            item = item.to_dict()
        spec[name] = _check(name, kind, item)
    return validation.json_object(spec, "job")


def _check(name: str, kind: str, item: Any) -> Any:
    field = f"job.{name}"
    if kind == "text":
        return validation.text(item, field)
    if kind == "list":
        if isinstance(item, str) or not isinstance(item, list | tuple):
            raise ValidationError(field, "must be a list")
        return [str(entry) if not isinstance(entry, Mapping) else dict(entry) for entry in item]
    if name == "tags":
        return validation.tags(item, field)
    if name in POLICIES:
        return POLICIES[name].from_dict(item, field).to_dict()
    return validation.json_object(item, field)
