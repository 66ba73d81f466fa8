"""Strict JSON text for read-model columns (``json_extract`` / ``::jsonb`` must accept it).

NaN and +-Infinity (real training signals) are written as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``: JSON has no tokens for them.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode


def strict_dumps(value: Any) -> str:
    """Compact, strict JSON of ``value`` (non-finite floats as strings, other objects ``str``)."""
    try:
        return _encode(value)
    except ValueError:
        return _encode(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
