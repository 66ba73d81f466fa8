"""What every instrumented Tinker client shares: the per-instance mark, attaching a
done-callback to an SDK future, reading a finished future, and making a client-creating future
instrument the client it returns (``lineage.adapters.tinker.instrument``)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

MARK = "_lineage_instrumented"


def attach(api_future: Any, on_done: Callable[[Future[Any]], None]) -> None:
    api_future.future().add_done_callback(on_done)


def outcome(done: Future[Any]) -> tuple[Any, BaseException | None]:
    error = done.exception()
    return (None, error) if error is not None else (done.result(), None)


def tokens(data: Any) -> int:
    """The tokens of a batch of datums; 0 when it is not one (the SDK will say why)."""
    try:
        return sum(int(datum.model_input.length) for datum in data)
    except Exception:  # the user's bad input is the SDK's to refuse, not ours
        return 0


def on_result(future: Any, instrument_client: Callable[[Any], None],
              on_error: Callable[[BaseException], None] | None = None) -> Any:
    """Make ``future`` (a client-creating future) instrument its client before anyone gets
    it: ``result`` and ``result_async`` are wrapped on this instance (the deprecated forwarding
    methods call ``result`` too). Instrumenting twice is a no-op. ``on_error`` hears a failed
    creation (once, however often it is asked)."""
    result, result_async = future.result, future.result_async
    heard: list[BaseException] = []

    def failed(error: BaseException) -> None:
        if isinstance(error, TimeoutError):  # the caller's wait ran out; the future did not fail
            return
        if on_error is not None and not any(seen is error for seen in heard):
            heard.append(error)
            on_error(error)

    def instrumented_result(timeout: float | None = None) -> Any:
        try:
            client = result(timeout)
        except Exception as error:
            failed(error)
            raise
        instrument_client(client)
        return client

    async def instrumented_result_async(timeout: float | None = None) -> Any:
        try:
            client = await result_async(timeout)
        except Exception as error:
            failed(error)
            raise
        instrument_client(client)
        return client

    future.result = instrumented_result
    future.result_async = instrumented_result_async
    return future
