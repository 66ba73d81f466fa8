"""Request limits of the server: body size (compressed and decompressed), a rate per token and
a rate of failed authentications per client address.

All answer before anything is decoded or stored: 413 for a body too big (a gzip bomb stops at
the decoded limit, not after), 429 with ``Retry-After`` (whole seconds) when a token sends
faster than its rate, or when an address failed authentication faster than its rate (checked
before any token is looked up: a client guessing tokens is throttled).
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from dataclasses import dataclass

from fastapi import HTTPException, Request

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 16 * MiB  # as sent (compressed)
    decoded_bytes: int = 128 * MiB  # after decompression
    rate_per_s: float = 200.0  # requests per token per second, on average
    burst: int = 400  # requests a token may send at once
    failed_auth_per_s: float = 2.0  # requests failing authentication per client address
    failed_auth_burst: int = 60  # ... that may fail at once before the address waits


class RateLimiter:
    """A token bucket per key (a bearer token's id, a client address). Thread-safe."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """0 when a request may go now (and counts it), else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > 100_000 and key not in self._buckets:
                self._buckets.clear()  # bounded memory: forgetting only forgives
            level, since = self._buckets.get(key, (float(self.burst), now))
            level = min(float(self.burst), level + (now - since) * self.rate)
            if level >= 1:
                self._buckets[key] = (level - 1, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1 - level) / self.rate


    def waiting(self, key: str) -> float:
        """The seconds ``key`` must wait before its next request may go (0: it may go);
        counts nothing."""
        now = time.monotonic()
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                return 0.0
            level = min(float(self.burst), found[0] + (now - found[1]) * self.rate)
            return 0.0 if level >= 1 else (1 - level) / self.rate


def too_many(wait_s: float, what: str = "requests for this token") -> HTTPException:
    return HTTPException(429, f"too many {what}; retry later",
                         headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, decompressed when ``Content-Encoding: gzip``; 413 past the limits,
    415 for another encoding, 400 for a body that does not decompress."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.body_bytes:
        raise _too_large(limits.body_bytes, "as sent")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.body_bytes:
            raise _too_large(limits.body_bytes, "as sent")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HTTPException(415, f"Content-Encoding {encoding!r} is not supported; use gzip or "
                            "none")
    decoder = zlib.decompressobj(wbits=31)
    try:
        decoded = decoder.decompress(body, limits.decoded_bytes + 1)
    except zlib.error as error:
        raise HTTPException(400, f"the body is not valid gzip ({error})") from None
    if len(decoded) > limits.decoded_bytes or decoder.unconsumed_tail:
        raise _too_large(limits.decoded_bytes, "decompressed")
    if not decoder.eof:
        raise HTTPException(400, "the body is truncated gzip")
    return decoded


def _too_large(limit: int, how: str) -> HTTPException:
    return HTTPException(413, f"the request body is over {limit} bytes {how}; send smaller "
                         "batches")
