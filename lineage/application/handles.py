"""What the API hands back for writes that matter: a handle that resolves once committed."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID


class _Expeditor(Protocol):
    def expedite(self) -> None: ...

    def seen(self, future: Future[Any]) -> None: ...


class Pending:
    """A write queued to the writer. ``wait()`` blocks until it is committed and returns its
    value, or raises the error that refused it (an InvariantError, a StoreError...)."""

    def __init__(self, future: Future[Any], writer: _Expeditor) -> None:
        self._future = future
        self._writer = writer

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> Any:
        """The command's value once committed; raises the error that refused it. A refusal
        nobody waits for is reported by the next ``flush()`` or ``close()`` instead."""
        if not self._future.done():
            self._writer.expedite()
        try:
            return self._future.result(timeout)
        finally:
            if self._future.done():
                self._writer.seen(self._future)

    def on_done(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(error)`` once the write is committed (``error`` None) or refused.

        It runs on the writer thread (or at once, here, when already done): it must be quick
        and must not wait for other writes; hand work to another thread.
        """
        def done(future: Future[Any]) -> None:
            callback(future.exception())

        self._future.add_done_callback(done)


@dataclass(frozen=True, eq=False)
class ArtifactRef:
    """A registered (or being registered) artifact. The id is known at once (deterministic);
    ``wait()`` blocks until the registration is committed."""

    id: UUID
    uri: str
    type: str
    size: int | None
    checksum_algorithm: str | None
    checksum: str | None
    step: int | None = None
    pending: Pending | None = field(default=None, repr=False)

    @property
    def digest(self) -> str | None:
        if self.checksum is None:
            return None
        return f"{self.checksum_algorithm}:{self.checksum}"

    def wait(self, timeout: float | None = None) -> ArtifactRef:
        if self.pending is not None:
            self.pending.wait(timeout)
        return self
