"""The training job spec a run starts with (TrainingIR-style), checked before it is stored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lineage.application import validation
from lineage.application.policies import CheckpointPolicy, RetryPolicy
from lineage.errors import ValidationError

# Policy fields are checked by their policy class and stored in its full (defaulted) form.
POLICIES: dict[str, Any] = {"checkpoint_policy": CheckpointPolicy, "retry_policy": RetryPolicy}

# field -> kind; "mapping" fields may hold anything JSON-serialisable, with the keys listed in
# TYPED checked (a job spec is what auditors read: a learning rate of "fast" or -1 GPUs is a bug).
JOB_FIELDS: dict[str, str] = {
    "key": "text",  # a job key: runs started with the same key get the same run id
    "model": "text",
    "base_model": "text",
    "adapter": "mapping",  # e.g. {"type": "lora", "rank": 16, "alpha": 32}
    "learning": "mapping",  # e.g. {"learning_rate": 1e-4, "batch_size": 64, "epochs": 3}
    "datasets": "list",  # uris or names (strings), or mappings such as {"uri":.., "digest":..}
    "checkpoint_policy": "mapping",
    "validation": "mapping",
    "resources": "mapping",
    "retry_policy": "mapping",
    "tenant": "text",
    "tags": "mapping",
    "metadata": "mapping",
}


def _positive(value: Any, field: str) -> float | int:
    return validation.number(value, field, above=True)


def _fraction(value: Any, field: str) -> float | int:
    return validation.number(value, field, maximum=1.0)


def _names(value: Any, field: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValidationError(field, "must be a list of names", value)
    return [validation.name(item, f"{field}[{index}]") for index, item in enumerate(value)]


Rule = Callable[[Any, str], Any]
_INT: Rule = validation.step  # a non-negative integer
TYPED: dict[str, dict[str, Rule]] = {
    "learning": {"learning_rate": _positive, "batch_size": validation.positive_int,
                 "epochs": validation.positive_int, "max_steps": validation.positive_int,
                 "warmup_steps": _INT, "gradient_accumulation_steps": validation.positive_int,
                 "weight_decay": validation.number, "momentum": validation.number,
                 "optimizer": validation.name, "schedule": validation.name},
    "adapter": {"type": validation.name, "rank": validation.positive_int, "alpha": _positive,
                "dropout": _fraction, "target_modules": _names},
    "resources": {"gpus": _INT, "nodes": validation.positive_int, "workers": _INT,
                  "cpus": validation.number, "memory_gb": validation.number,
                  "device": validation.name},
    "validation": {"every": validation.positive_int, "metric": validation.name,
                   "dataset": validation.name, "split": validation.name},
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
        return validation.name(item, field)
    if kind == "list":
        return _datasets(item, field)
    if name == "tags":
        return validation.tags(item, field)
    if name in POLICIES:
        return POLICIES[name].from_dict(item, field).to_dict()
    checked = validation.json_object(item, field)
    for key, rule in TYPED.get(name, {}).items():
        if checked.get(key) is not None:
            rule(checked[key], f"{field}.{key}")
    return checked


def _datasets(item: Any, field: str) -> list[Any]:
    if isinstance(item, str) or not isinstance(item, list | tuple):
        raise ValidationError(field, "must be a list")
    if len(item) > validation.IDS_MAX:
        raise ValidationError(field, f"holds {len(item)} entries; the limit is "
                                     f"{validation.IDS_MAX}")
    out: list[Any] = []
    for index, entry in enumerate(item):
        if isinstance(entry, Mapping):
            out.append(validation.json_object(entry, f"{field}[{index}]"))
        elif isinstance(entry, str):
            out.append(validation.text(entry, f"{field}[{index}]", max_length=validation.URI_MAX))
        else:
            raise ValidationError(f"{field}[{index}]", f"must be a string (a uri or name) or a "
                                                       f"mapping, not {type(entry).__name__}", entry)
    return out
