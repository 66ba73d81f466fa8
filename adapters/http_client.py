"""``HttpxTrackerClient``: the remote tracker's transport to ``lineage serve`` (httpx).

``send`` posts one gzip-compressed batch and tells the shipper what to do next; ``get`` runs a
query and turns the server's error answers back into our errors (404 -> NotFoundError, 400 ->
ValidationError, an unreachable server or a 5xx -> StoreError ``unreachable server``).
"""

from __future__ import annotations

import gzip
import json
from typing import Any, NamedTuple

import httpx

from lineage.errors import (
    ArtifactNotFoundError,
    ConfigurationError,
    LineageError,
    RunNotFoundError,
    StoreError,
    ValidationError,
)

UNREACHABLE = "unreachable server"


class Answer(NamedTuple):
    """What came of sending a batch: ``status`` 0 when no answer came (retry), ``body`` the
    decoded JSON (None when there is none), ``retry_after`` seconds asked by the server."""

    status: int
    body: Any
    retry_after: float


class HttpxTrackerClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0,
                 client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.client = client or httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0))

    def send(self, items: list[str], *, retry: bool) -> Answer:
        """POST the items (each one JSON text) as one batch."""
        body = ('{"retry":%s,"items":[%s]}' % ("true" if retry else "false", ",".join(items)))
        try:
            response = self.client.post(
                f"{self.url}/v1/batches", content=gzip.compress(body.encode(), 1),
                headers={**self._headers, "Content-Encoding": "gzip",
                         "Content-Type": "application/json"})
        except httpx.HTTPError:
            return Answer(0, None, 0.0)
        try:
            data = response.json()
        except ValueError:
            data = None
        return Answer(response.status_code, data, _seconds(response.headers.get("retry-after")))

    def get(self, path: str, **params: Any) -> Any:
        """A query's JSON answer; our errors for the server's error answers."""
        query = {key: _param(value) for key, value in params.items() if value is not None}
        try:
            response = self.client.get(f"{self.url}{path}", params=query, headers=self._headers)
        except httpx.HTTPError as error:
            raise StoreError(f"{self.url}: {UNREACHABLE} ({error})", UNREACHABLE) from None
        if response.status_code == 200:
            return json.loads(response.content)
        raise _error(response, path)

    def close(self) -> None:
        self.client.close()


def _param(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _seconds(text: str | None) -> float:
    try:
        return max(0.0, float(text)) if text else 0.0
    except ValueError:
        return 0.0


def _error(response: httpx.Response, path: str) -> LineageError:
    try:
        data = response.json()
    except ValueError:
        data = {}
    detail = data.get("detail", response.text[:200]) if isinstance(data, dict) else str(data)
    error = data.get("error") or {} if isinstance(data, dict) else {}
    if response.status_code == 404:
        kind = error.get("type", "")
        if kind == "RunNotFoundError" or (not kind and path.startswith("/v1/runs/")):
            return RunNotFoundError(path.split("/")[3] if path.count("/") >= 3 else path)
        return ArtifactNotFoundError(path.rsplit("/", 1)[-1])
    if response.status_code in (400, 422):
        return ValidationError(error.get("field") or "request", str(detail))
    if response.status_code in (401, 403):
        return ConfigurationError(f"the server refused the token ({response.status_code}: "
                                  f"{detail}); set LINEAGE_TOKEN to a token with read scope")
    return StoreError(f"{path}: the server answered {response.status_code} ({detail})",
                      UNREACHABLE if response.status_code >= 500 else None)
