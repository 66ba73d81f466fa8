"""Classify a Tinker SDK error: retryable or not, by the SDK's own error types.

- ``RequestFailedError`` (the request completed in a failed state): retryable unless its
  category is ``user`` (a bad request stays bad);
- ``APIConnectionError`` / ``APITimeoutError``, and HTTP 408, 429, 5xx: retryable;
- the "poisoned" ``RuntimeError`` a TrainingClient raises after a failed custom loss: retryable
  with a new client (signal ``tinker.client_poisoned``);
- any other HTTP status (400, 401, 403, 404, 409 name taken, 422) and anything else: not.

A failed request's signal starts with ``request.`` (``lineage.domain.recovery_rules``): the
training script may retry it and the run goes on, so the recovery monitor never takes such a
failure for a dead run. A poisoned client (``tinker.client_poisoned``) and an unknown error
(``tinker.error``) are the run's.
"""

from __future__ import annotations

from typing import NamedTuple

import tinker


class Classified(NamedTuple):
    error_type: str
    retryable: bool
    signal: str


REQUEST_FAILED = "request.tinker.failed."  # + the SDK's error category
SERVER_FAILED = f"{REQUEST_FAILED}server"


def classify(error: BaseException) -> Classified:
    name = type(error).__name__
    if isinstance(error, tinker.RequestFailedError):
        category = str(getattr(error, "category", "unknown")).lower().rsplit(".", 1)[-1]
        return Classified(name, category != "user", f"{REQUEST_FAILED}{category}")
    if isinstance(error, tinker.APIConnectionError):
        return Classified(name, True, "request.tinker.connection")
    if isinstance(error, tinker.APIStatusError):
        code = error.status_code
        return Classified(name, code in (408, 429) or code >= 500, f"request.tinker.http_{code}")
    if isinstance(error, RuntimeError) and "poisoned" in str(error):
        return Classified(name, True, "tinker.client_poisoned")
    return Classified(name, False, "tinker.error")
