"""A Hugging Face ``Trainer``'s settings as the run's job spec (TrainingIR fields).

Pure functions of ``TrainingArguments``, the trainer state and the model (its config, and its
PEFT adapter config when there is one); no transformers import, so they are tested by value.
"""

from __future__ import annotations

import math
from typing import Any


def text(value: Any) -> Any:
    """An enum's value (``SaveStrategy.STEPS`` -> ``"steps"``), anything else as it is."""
    return getattr(value, "value", value)


def job_spec(args: Any, model: Any, max_steps: int | None) -> dict[str, Any]:
    """The job spec: model, adapter (PEFT), learning, checkpoint policy, validation, resources
    and metadata. ``max_steps`` (the trainer state's) turns fractional steps into counts."""
    spec: dict[str, Any] = {"model": model_name(model), "learning": learning(args, max_steps),
                            "metadata": {"framework": "transformers",
                                         "output_dir": str(args.output_dir),
                                         "seed": args.seed}}
    if args.save_total_limit and args.save_total_limit > 0:  # the Trainer's own rotation
        spec["metadata"]["save_total_limit"] = int(args.save_total_limit)
    adapter = adapter_spec(model)
    if adapter is not None:
        spec["adapter"] = adapter
        base = getattr(_peft_config(model), "base_model_name_or_path", None)
        if base:
            spec["base_model"] = str(base)
    policy = checkpoint_policy(args, max_steps)
    if policy is not None:
        spec["checkpoint_policy"] = policy
    checks = validation_spec(args, max_steps)
    if checks is not None:
        spec["validation"] = checks
    spec["resources"] = {"device": str(getattr(args, "device", "cpu")).split(":")[0],
                         "gpus": int(getattr(args, "n_gpu", 0) or 0),
                         "workers": int(getattr(args, "world_size", 1) or 1)}
    return spec


def model_name(model: Any) -> str:
    config = getattr(model, "config", None)
    for name in (getattr(config, "_name_or_path", None), getattr(config, "name_or_path", None),
                 getattr(config, "model_type", None)):
        if isinstance(name, str) and name.strip():
            return name
    return type(model).__name__


def _peft_config(model: Any) -> Any:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return None
    active = getattr(model, "active_adapter", None)
    return configs.get(active) if isinstance(active, str) and active in configs else next(
        iter(configs.values()))


def adapter_spec(model: Any) -> dict[str, Any] | None:
    """The PEFT adapter (LoRA's rank, alpha, dropout, target modules), or None."""
    config = _peft_config(model)
    if config is None:
        return None
    spec: dict[str, Any] = {"type": str(text(getattr(config, "peft_type", "peft"))).lower()}
    for key, field in (("rank", "r"), ("alpha", "lora_alpha"), ("dropout", "lora_dropout")):
        value = getattr(config, field, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            spec[key] = value
    modules = getattr(config, "target_modules", None)
    if isinstance(modules, str):
        spec["target_modules"] = [modules]
    elif modules:
        spec["target_modules"] = sorted(str(module) for module in modules)
    return spec


def learning(args: Any, max_steps: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"learning_rate": args.learning_rate,
                           "batch_size": args.per_device_train_batch_size,
                           "gradient_accumulation_steps": args.gradient_accumulation_steps,
                           "weight_decay": args.weight_decay,
                           "optimizer": str(text(args.optim)),
                           "schedule": str(text(args.lr_scheduler_type))}
    epochs = args.num_train_epochs
    if float(epochs).is_integer() and epochs >= 1 and args.max_steps <= 0:
        out["epochs"] = int(epochs)
    if max_steps:
        out["max_steps"] = int(max_steps)
    warmup = steps_of(args.warmup_steps, max_steps)
    if warmup:
        out["warmup_steps"] = warmup
    return out


def steps_of(value: Any, max_steps: int | None) -> int | None:
    """A step count from an argument that may be a fraction of the run (``0.1``)."""
    if value is None or value <= 0:
        return None
    if value < 1:
        return max(1, math.ceil(value * max_steps)) if max_steps else None
    return int(value)


def best(args: Any) -> dict[str, Any]:
    metric = args.metric_for_best_model
    if not metric:
        return {}
    name = metric if metric.startswith("eval_") else f"eval_{metric}"
    return {"best_metric": name, "best_mode": "max" if args.greater_is_better else "min"}


def checkpoint_policy(args: Any, max_steps: int | None) -> dict[str, Any] | None:
    """``save_strategy``/``save_steps`` as a CheckpointPolicy dict. No ``keep_last``: that is
    lineage's own retention, which deletes files; the Trainer deletes its folders itself by
    ``save_total_limit`` (which also keeps its best and goes by folder mtime), and two deleters
    of one folder disagree (``metadata.save_total_limit`` records it; the callback records the
    Trainer's deletions as retirements)."""
    strategy = str(text(args.save_strategy))
    common: dict[str, Any] = {"format": "safetensors" if getattr(args, "save_safetensors", True)
                              else "pytorch", **best(args)}
    if strategy == "steps":
        every = steps_of(args.save_steps, max_steps)
        return {"strategy": "steps", "save_every": every, **common} if every else None
    if strategy == "epoch":
        return {"strategy": "epoch", "save_every": 1, **common}
    if strategy == "best" and common.get("best_metric"):
        return {"strategy": "best", **common}
    return None


def validation_spec(args: Any, max_steps: int | None) -> dict[str, Any] | None:
    strategy = str(text(args.eval_strategy))
    if strategy == "no":
        return None
    out: dict[str, Any] = {"strategy": strategy}
    if strategy == "steps":
        every = steps_of(args.eval_steps or args.logging_steps, max_steps)
        if every:
            out["every"] = every
    metric = best(args).get("best_metric")
    if metric:
        out["metric"] = metric
    return out


def numbers(values: dict[str, Any] | None) -> dict[str, float]:
    """The numeric entries of a log or metrics dict (bools and text left out)."""
    return {key: float(value) for key, value in (values or {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}
