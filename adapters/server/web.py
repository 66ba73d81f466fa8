"""The web pages of ``lineage serve`` and the read routes only they need.

The pages are static files (``static/``: HTML, our ES modules, and uPlot from the npm registry
under ``static/vendor/`` with its licence) served at ``/ui/``; they hold no
data and need no token. Everything they show comes from the REST API with the bearer token the
user gave on the login page (kept in the tab's ``sessionStorage``, sent as ``Authorization``),
so a page shows exactly what the token may read, and nothing without one (401).

    GET /                                   redirect to /ui/
    GET /ui/...                             the pages (hash routes: #/runs, #/runs/ID, ...)
    GET /v1/run-table               read    runs newest first, filtered, with the total
    GET /v1/runs/{id}/overview      read    a run with its marks, recovery chain, resources
    GET /v1/runs/{id}/curves        read    every metric of the run, downsampled (buckets)
    GET /v1/lineage/{id}/layout     read    the lineage graph with positions (web_graph)
    GET /v1/artifacts/{id}/alias-history  read  every alias that ever pointed at it, and when
    GET /v1/ui-settings             read    what the pages are configured with (Jaeger's URL)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lineage.application.job_status import JOB_STATUSES
from lineage.errors import ValidationError
from lineage.projections.web_queries import WebQueries

from .app import LineageJSON, require
from .reads import _id, _offset, _one_of, _own_node
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
    """The static pages, with a content security policy and no caching of stale code;
    ``index.html`` with a modulepreload line for every module under ``js/`` (``index``)."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC, html=True)
        self.index = index()

    async def get_response(self, path: str, scope: Any) -> Response:
        if path in (".", "index.html") and scope["method"] in ("GET", "HEAD"):
            return _secured(Response(self.index, media_type="text/html"))
        return await super().get_response(path, scope)

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        return _secured(super().file_response(*args, **kwargs))


def index() -> bytes:
    """``static/index.html`` with ``<!-- modules -->`` replaced by a modulepreload line per
    ``static/js/*.js``: the browser fetches every module at once, not import by import, and a
    new module needs no edit to the page."""
    lines = [f'<link rel="modulepreload" href="js/{path.name}">'
             for path in sorted((STATIC / "js").glob("*.js"))]
    return (STATIC / "index.html").read_text().replace("<!-- modules -->", "\n".join(lines)).encode()


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


def add_pages(app: FastAPI, settings: WebSettings) -> None:
    """Mount the pages at ``/ui`` and add the routes they read."""
    app.state.web = WebQueries(app.state.core.views)
    app.state.web_settings = settings
    app.include_router(router)
    app.mount("/ui", Pages(), name="ui")

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
    found: dict[str, Any] = request.app.state.web.run_overview(_id(run_id, "run"),
                                                               tenant=who.tenant_id)
    return found


@router.get("/runs/{run_id}/curves")
def run_curves(request: Request, run_id: str, buckets: int = 1000, who: Principal = READ) -> Any:
    """Every metric of the run, downsampled on the server: ``{name: [{step_from, step_to,
    count, min, max, last}...]}``, at most ``buckets`` each, by the rule of
    ``metrics/{name}?buckets=N`` (one pass over the run's blocks for every metric)."""
    found = request.app.state.web.curves(_id(run_id, "run"), buckets, tenant=who.tenant_id)
    return LineageJSON(found)  # as it is: large


@router.get("/ui-settings")
def ui_settings(request: Request, who: Principal = READ) -> dict[str, Any]:
    settings: WebSettings = request.app.state.web_settings
    return {"jaeger_url": settings.jaeger_url}


@router.get("/lineage/{node_id}/layout")
def lineage_layout(request: Request, node_id: str,
                   direction: Literal["up", "down", "both"] = "up",
                   depth: int = Query(20, ge=0, le=100), who: Principal = READ) -> Any:
    """``/v1/lineage/{id}`` laid out on the server, as the page draws it: nodes with their
    kind, label, page link and position, edges by node index (``web_graph``)."""
    node = _own_node(request.app.state.core, who, node_id)
    return LineageJSON(request.app.state.web.lineage_layout(node, direction=direction,
                                                            depth=depth))


@router.get("/artifacts/{artifact_id}/alias-history")
def artifact_alias_history(request: Request, artifact_id: str,
                           who: Principal = READ) -> list[dict[str, Any]]:
    """Every alias that ever pointed at the artifact: when it came and when it moved away."""
    found: list[dict[str, Any]] = request.app.state.web.alias_periods(
        _id(artifact_id, "artifact"), tenant=who.tenant_id)
    return found
