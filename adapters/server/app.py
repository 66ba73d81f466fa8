"""The routes of ``lineage serve``: health, readiness, the write path, tokens; the queries are
in ``reads``. Every route but ``/healthz`` and ``/readyz`` needs a bearer token with the route's
scope; what a route reads or writes is the token's tenant's, and another tenant's runs and
artifacts are not found. Our errors become status codes in one place (``_error``).

    GET  /healthz, /readyz              liveness; readiness (the store answers)
    GET  /v1/whoami                     the token's tenant, actor and scopes
    POST /v1/batches        write       items of a remote tracker (lineage.remote.wire)
    GET|POST /v1/tokens, DELETE /v1/tokens/{id}   admin   the tenant's tokens
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from lineage.errors import LineageError, NotFoundError, StoreError, ValidationError
from lineage.remote.wire import decode_batch, error_data
from lineage.version import __version__

from .core import ServerCore
from .limits import Limits, RateLimiter, read_body, too_many
from .tokens import Principal, expiry

AUTH_CACHE_S = 2.0  # a revoked token is refused at most this long after


class LineageJSON(JSONResponse):
    """JSON that keeps NaN and infinities (metrics may hold them), as Python's json reads."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=True, default=str, separators=(",", ":")).encode()


BATCH_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["items"],
    "properties": {
        "retry": {"type": "boolean", "description": "sent again: leave out stored events"},
        "items": {"type": "array", "maxItems": 10_000, "items": {"type": "object", "description":
                  "a step item {t: s, run, rows} or a call {t: c, op, run, args, kwargs, id, at, "
                  "loc} (lineage.remote.wire)"}}}}}}}


class NewToken(BaseModel):
    actor: str
    scopes: list[str]
    expires: str | None = None  # a duration (12h, 30d) or an ISO time with a zone; None: never


def create_app(core: ServerCore, limits: Limits | None = None, web: Any = None) -> FastAPI:
    """The application over ``core``; closing it (lifespan end: SIGTERM, Ctrl-C) drains the
    writers and closes the store. ``web``: the pages' ``web.WebSettings`` (default: none set)."""
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(core.close)
        print("lineage serve: stopped; every writer drained", file=sys.stderr, flush=True)

    app = FastAPI(title="lineage", version=__version__, lifespan=lifespan,
                  default_response_class=LineageJSON)
    app.state.core = core
    app.state.limits = limits
    app.state.rate = RateLimiter(limits.rate_per_s, limits.burst)
    app.state.failed_auth = RateLimiter(limits.failed_auth_per_s, limits.failed_auth_burst)
    app.state.auth_cache = {}
    app.state.known_good = set()  # token texts that authenticated once (see ``require``)
    _errors(app)
    _routes(app, core, limits)
    from .reads import router

    app.include_router(router)
    from .web import WebSettings, add_pages

    add_pages(app, web or WebSettings())
    return app


def require(scope: str) -> Callable[[Request], Principal]:
    """A dependency: the request's principal, holding ``scope`` (401 without a valid token,
    403 without the scope, 429 past the token's rate).

    Before any token is looked up: a client address whose requests failed authentication
    faster than ``Limits.failed_auth_per_s`` (past a burst) gets 429 with Retry-After, so a
    client guessing tokens is throttled; only a token that authenticated once
    before still passes on from that address to be checked as always (a guesser on a shared
    address does not lock out a client already working)."""

    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        kind, _, text = header.partition(" ")
        address = request.client.host if request.client is not None else "unknown"
        failed: RateLimiter = request.app.state.failed_auth
        wait = failed.waiting(address)
        if wait and text.strip() not in request.app.state.known_good:
            raise too_many(wait, "failed authentications from this address")
        if kind.lower() != "bearer" or not text.strip():
            failed.retry_after(address)
            raise HTTPException(401, "a bearer token is needed (Authorization: Bearer lnt....)",
                                headers={"WWW-Authenticate": "Bearer"})
        found = _authenticate(request, text.strip())
        if found is None:
            failed.retry_after(address)
            raise HTTPException(401, "the token is not valid (unknown, revoked, expired or "
                                "malformed)", headers={"WWW-Authenticate": "Bearer"})
        wait = request.app.state.rate.retry_after(found.token_id)
        if wait:
            raise too_many(wait)
        if not found.allows(scope):
            raise HTTPException(403, f"this token has no {scope} scope")
        return found

    return principal


def _authenticate(request: Request, text: str) -> Principal | None:
    cache: dict[str, tuple[float, Principal | None]] = request.app.state.auth_cache
    now = time.monotonic()
    hit = cache.get(text)
    if hit is not None and now - hit[0] < AUTH_CACHE_S:
        return None if hit[1] is None or hit[1].expired() else hit[1]
    found = request.app.state.core.tokens.authenticate(text)
    if len(cache) > 10_000:
        cache.clear()
    cache[text] = (now, found)
    if found is not None:
        known: set[str] = request.app.state.known_good
        if len(known) > 10_000:
            known.clear()
        known.add(text)
    return found


def _routes(app: FastAPI, core: ServerCore, limits: Limits) -> None:
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        ready = core.ready()
        return LineageJSON({"status": "ready" if ready else "unavailable"},
                           status_code=200 if ready else 503)

    @app.get("/v1/whoami", tags=["tokens"])
    def whoami(who: Principal = Depends(require("read"))) -> dict[str, Any]:
        return {"tenant": who.tenant_id, "actor": who.actor, "scopes": sorted(who.scopes)}

    @app.post("/v1/batches", tags=["write"], openapi_extra={"requestBody": BATCH_BODY},
              summary="apply a remote tracker's batch (gzip or plain JSON)")
    async def batches(request: Request, who: Principal = Depends(require("write"))) -> Any:
        body = await read_body(request, limits)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise ValidationError("body", f"is not valid JSON ({type(error).__name__}: "
                                  f"{str(error)[:200]})") from None
        items, retry = decode_batch(data)
        answer = await run_in_threadpool(core.session(who).apply, items, retry)
        refused = all(not result["ok"] for result in answer["results"]) and answer["results"]
        return LineageJSON(answer, status_code=422 if refused else 200)

    @app.get("/v1/export/status", tags=["export"])
    def export_status(who: Principal = Depends(require("admin"))) -> list[dict[str, Any]]:
        """The exporters' positions in the whole store's log (not one tenant's): admin."""
        return core.export_status()

    @app.get("/v1/tokens", tags=["tokens"])
    def tokens(who: Principal = Depends(require("admin"))) -> list[dict[str, Any]]:
        return core.tokens.list(who.tenant_id)

    @app.post("/v1/tokens", tags=["tokens"], status_code=201)
    def create_token(new: NewToken, who: Principal = Depends(require("admin"))) -> dict[str, str]:
        return {"token": core.tokens.create(who.tenant_id, new.actor, new.scopes,
                                            expiry(new.expires))}

    @app.delete("/v1/tokens/{token_id}", tags=["tokens"])
    def revoke_token(token_id: str, who: Principal = Depends(require("admin"))) -> dict[str, Any]:
        if not core.tokens.revoke(token_id, tenant_id=who.tenant_id):
            raise HTTPException(404, f"live token {token_id[:64]!r} not found in this tenant")
        request_cache_clear(app)
        return {"revoked": token_id}


def request_cache_clear(app: FastAPI) -> None:
    app.state.auth_cache.clear()


def _errors(app: FastAPI) -> None:
    """Our errors as status codes: 400 bad input, 404 not found (another tenant's too), 409
    refused by the domain, 503 store unavailable (with Retry-After)."""

    @app.exception_handler(LineageError)
    async def lineage_error(request: Request, error: LineageError) -> JSONResponse:
        status = (400 if isinstance(error, ValidationError) else 404
                  if isinstance(error, NotFoundError) else 503
                  if isinstance(error, StoreError) else 409)
        headers = {"Retry-After": "1"} if status == 503 else None
        return LineageJSON({"detail": str(error), "error": error_data(error)}, status_code=status,
                           headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                    for e in error.errors()]
        return LineageJSON({"detail": "; ".join(f"{p['field']}: {p['message']}" for p in problems),
                            "errors": problems}, status_code=400)
