"""The web pages of ``lineage serve`` and the read routes only they need.

The pages are static files (``static/``: HTML, our ES modules, and uPlot and Cytoscape from
the npm registry under ``static/vendor/`` with their licences) served at ``/ui/``; they hold no
data and need no token. Everything they show comes from the REST API with the bearer token the
user gave on the login page (kept in the tab's ``sessionStorage``, sent as ``Authorization``),
so a page shows exactly what the token may read, and nothing without one (401).

    GET /                                   redirect to /ui/
    GET /ui/...                             the pages (hash routes: #/runs, #/runs/ID, ...)
    GET /v1/run-table               read    runs newest first, filtered, with the total
    GET /v1/runs/{id}/overview      read    a run with its marks, recovery chain, resources
    GET /v1/runs/{id}/curves        read    every metric of the run, downsampled (buckets)
    GET /v1/ui-settings             read    what the pages are configured with (Jaeger's URL)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lineage.application.job_status import JOB_STATUSES
from lineage.errors import ValidationError
from lineage.projections.web_queries import WebQueries

from .app import LineageJSON, require
from .reads import _offset, _one_of, own_run
from .tokens import Principal

STATIC = Path(__file__).resolve().parent / "static"
READ = Depends(require("read"))
# the pages load only their own files and talk only to their own origin
POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
          "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class WebSettings:
    """What the pages are configured with: ``jaeger_url``, the base URL of a Jaeger UI that
    holds the runs' traces (a run links to ``<jaeger_url>/trace/<trace id>``; None: no link)."""

    jaeger_url: str | None = None

    def __post_init__(self) -> None:
        url = self.jaeger_url
        if url is not None and (not url.startswith(("http://", "https://")) or any(
                c.isspace() or c in "\"'<>" for c in url)):
            raise ValidationError("jaeger_url", "must be an http:// or https:// URL (the base of "
                                  "a Jaeger UI)", url)


class Pages(StaticFiles):
    """The static pages, with a content security policy and no caching of stale code."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def add_pages(app: FastAPI, settings: WebSettings) -> None:
    """Mount the pages at ``/ui`` and add the routes they read."""
    app.state.web = WebQueries(app.state.core.views)
    app.state.web_settings = settings
    app.include_router(router)
    app.mount("/ui", Pages(directory=STATIC, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/")


router = APIRouter(prefix="/v1", tags=["web"])


@router.get("/run-table")
def run_table(request: Request, status: str | None = Query(None),
              name: str | None = Query(None, max_length=200),
              tag: str | None = Query(None, max_length=200), since: str | None = None,
              until: str | None = None, limit: int = Query(50, ge=1, le=1000),
              offset: int = _offset(), who: Principal = READ) -> dict[str, Any]:
    """The token's tenant's runs, newest first: ``name`` a part of the name, ``tag`` key or
    key=value, ``since``/``until`` bound the start time; ``total`` counts every match."""
    found: dict[str, Any] = request.app.state.web.run_table(
        tenant=who.tenant_id, status=_one_of(status, "status", JOB_STATUSES), name=name or None,
        tag=tag or None, since=since or None, until=until or None, limit=limit, offset=offset)
    return found


@router.get("/runs/{run_id}/overview")
def run_overview(request: Request, run_id: str, who: Principal = READ) -> dict[str, Any]:
    """The run, its evaluations, checkpoints, failures and recoveries (``marks``), its recovery
    chain (runs of the same root, oldest first) and its latest resource sample."""
    row = own_run(request.app.state.core, who, run_id)
    found: dict[str, Any] = request.app.state.web.run_overview(row["id"])
    return found


@router.get("/runs/{run_id}/curves")
def run_curves(request: Request, run_id: str, buckets: int = Query(1000, ge=1, le=10_000),
               who: Principal = READ) -> Any:
    """Every metric of the run, downsampled on the server: ``{name: [{step_from, step_to,
    count, min, max, last}...]}``, at most ``buckets`` each (from the step blocks' summaries
    when the run has many blocks: a 1,000,000-step run costs about what a short one does)."""
    row = own_run(request.app.state.core, who, run_id)
    return LineageJSON(request.app.state.web.curves(row["id"], buckets))  # as it is: large


@router.get("/ui-settings")
def ui_settings(request: Request, who: Principal = READ) -> dict[str, Any]:
    settings: WebSettings = request.app.state.web_settings
    return {"jaeger_url": settings.jaeger_url}
