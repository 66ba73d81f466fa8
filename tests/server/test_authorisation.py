"""The authorisation matrix: every route x no / wrong / revoked / read / write / admin token x
the data's own tenant / another tenant. Zero unauthorised reads or writes: without a valid
token 401, without the scope 403, another tenant's run or artifact 404 (as a missing one), and
its ids never appear in a list."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import lineage
from tests.server.conftest import InProcessServer

SCOPES = {"read": ("read",), "write": ("write",), "admin": ("admin",)}


@pytest.fixture(scope="module")
def world(shared_server: InProcessServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tenant A's run with a checkpoint (recorded through a remote tracker), and tokens."""
    tenants = {"own": f"a-{uuid.uuid4().hex[:8]}", "other": f"b-{uuid.uuid4().hex[:8]}"}
    tokens = {(kind, where): shared_server.token(tenant, f"{kind}-user", SCOPES[kind])
              for kind in SCOPES for where, tenant in tenants.items()}
    folder = tmp_path_factory.mktemp("auth")
    checkpoint = folder / "c.bin"
    checkpoint.write_bytes(b"weights")
    tracker = lineage.Tracker(shared_server.url, token=tokens[("write", "own")],
                              spool=folder / "spool")
    with tracker.start_run("owned") as run:
        run.log_step(1, {"loss": 0.5})
        ref = run.save_checkpoint(checkpoint, step=1)
    tracker.close()
    revoked = shared_server.token(tenants["own"], "gone", ("admin",))
    shared_server.core.tokens.revoke(revoked.split(".")[2])
    tokens[("revoked", "own")] = revoked
    tokens[("wrong", "own")] = revoked.rsplit(".", 1)[0] + ".not-the-secret"
    tokens[("garbage", "own")] = "abc"
    return {"run": str(run.id), "artifact": str(ref.id), "tokens": tokens, "tenants": tenants}


def _batch(run: str) -> dict[str, Any]:
    return {"items": [{"t": "c", "op": "finish", "run": run, "args": [], "kwargs": {},
                       "id": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat(), "loc": {}}]}


# (method, path, scope, kind): kind "object" names tenant A's data, "list" lists a tenant's.
ROUTES = [
    ("GET", "/v1/whoami", "read", "self"),
    ("POST", "/v1/batches", "write", "object"),
    ("GET", "/v1/runs", "read", "list"),
    ("GET", "/v1/run-count", "read", "list"),
    ("GET", "/v1/runs/{run}", "read", "object"),
    ("GET", "/v1/runs/{run}/trace", "read", "object"),
    ("GET", "/v1/runs/{run}/metrics/loss", "read", "object"),
    ("GET", "/v1/ids?prefix={run8}", "read", "list"),
    ("GET", "/v1/artifacts", "read", "list"),
    ("GET", "/v1/artifacts/{artifact}", "read", "object"),
    ("GET", "/v1/lineage/{artifact}", "read", "object"),
    ("GET", "/v1/audit", "read", "list"),
    ("GET", "/v1/aliases/latest", "read", "list"),
    ("GET", "/v1/run-table", "read", "list"),
    ("GET", "/v1/runs/{run}/overview", "read", "object"),
    ("GET", "/v1/runs/{run}/curves", "read", "object"),
    ("GET", "/v1/ui-settings", "read", "self"),
    ("GET", "/v1/lineage/{artifact}/layout", "read", "object"),
    ("GET", "/v1/artifacts/{artifact}/alias-history", "read", "object"),
    ("GET", "/v1/runs/{run}/steps", "read", "object"),
    ("GET", "/v1/runs/{run}/history", "read", "object"),
    ("GET", "/v1/runs/{run}/lost-steps?after_step=0", "read", "object"),
    ("GET", "/v1/quarantine", "read", "list"),
    ("GET", "/v1/tokens", "admin", "list"),
    ("GET", "/v1/export/status", "admin", "self"),
    ("POST", "/v1/tokens", "admin", "self"),
    ("DELETE", "/v1/tokens/{own_token}", "admin", "object"),
]
TOKENS = [(kind, where) for kind in ("read", "write", "admin") for where in ("own", "other")] + [
    ("revoked", "own"), ("wrong", "own"), ("garbage", "own"), (None, "own")]


def _allowed(kind: str, scope: str) -> bool:
    return kind == "admin" or kind == scope


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_every_route_checks_the_token_its_scope_and_the_tenant(
        shared_server: InProcessServer, world: dict[str, Any], route: tuple[str, ...]) -> None:
    method, template, scope, kind = route
    for token_kind, where in TOKENS:
        throwaway = shared_server.token(world["tenants"]["own"], "throwaway", ("read",)) \
            if "{own_token}" in template else "..."
        path = template.format(run=world["run"], run8=world["run"][:8],
                               artifact=world["artifact"], own_token=throwaway.split(".")[2])
        token = None if token_kind is None else world["tokens"][(token_kind, where)]
        response = _send(shared_server, method, path, token, world)
        label = f"{method} {path} with {token_kind} token of the {where} tenant"
        if token_kind not in SCOPES:
            assert response.status_code == 401, label
        elif not _allowed(token_kind, scope):
            assert response.status_code == 403, label
        elif where == "own" or kind == "self":
            assert response.status_code in (200, 201), (label, response.text[:300])
        elif kind == "object":
            assert response.status_code in (404, 422), (label, response.text[:300])
            assert "not found" in response.text, label
        else:
            assert response.status_code == 200, label
            assert world["run"] not in response.text and world["artifact"] not in response.text
            assert world["tenants"]["own"] not in json.dumps(response.json()), label
    # nothing another tenant did changed the run: it is still completed, by its own actor
    run = _send(shared_server, "GET", f"/v1/runs/{world['run']}",
                world["tokens"][("read", "own")], world).json()
    assert run["status"] == "completed"


def _send(server: InProcessServer, method: str, path: str, token: str | None,
          world: dict[str, Any]) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if path == "/v1/batches":
        target = world["run"]
        return server.http.post(path, json=_batch(target), headers=headers)
    if method == "POST":
        return server.http.post(path, json={"actor": "new", "scopes": ["read"]},
                          headers=headers)
    return server.http.request(method, path, headers=headers)


def test_the_actor_is_the_token_s_whatever_the_client_says(shared_server: InProcessServer,
                                                            tmp_path: Path) -> None:
    token = shared_server.token(f"c-{uuid.uuid4().hex[:8]}", "carol")
    tracker = lineage.Tracker(shared_server.url, token=token, actor="root", source="forged",
                              spool=tmp_path / "spool")
    run = tracker.start_run("mine")
    run.finish()
    tracker.flush()
    rows = tracker.audit(subject=run.id)
    tracker.close()
    assert rows and {row["actor"] for row in rows} == {"carol"}
