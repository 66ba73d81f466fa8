"""``lineage serve``, ``lineage tokens ...`` and ``lineage sync``: the server and its clients.

    lineage serve [--host H] [--port P] [--max-body-mb N] [--rate R]
    lineage tokens create --tenant T --actor A [--scope read|write|admin ...] [--expires 30d]
                          [--json]
    lineage tokens list [--tenant T] [--json]
    lineage tokens revoke ID
    lineage sync [--url URL] [--token TOKEN] [--spool-dir DIR] [--json]

``serve`` and ``tokens`` work on the database of ``--db``; ``sync`` sends the spools that
remote trackers of ``--url`` (default LINEAGE_URL) left on this machine. The query commands
(``runs``, ``trace``, ``artifacts``...) take ``--db http://host:port`` with LINEAGE_TOKEN set.
"""

from __future__ import annotations

from typing import Any

import click

from lineage.cli.base import Invocation, command, fail, group, json_option, print_json


def register(root: click.Group) -> None:
    root.add_command(_serve)
    for sub in (_create, _list, _revoke):
        _tokens.add_command(sub)
    root.add_command(_tokens)
    root.add_command(_sync)


@command("serve", "serve the store over HTTP to remote trackers (needs the server extra)",
         "Health: GET /healthz, readiness: GET /readyz, the API under /v1 (OpenAPI at "
         "/openapi.json), the web pages at /ui/ (log in with a read token). Ctrl-C or "
         "SIGTERM drains every writer before it exits.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True)
@click.option("--max-body-mb", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="largest request body as sent (decompressed: 8 times that)")
@click.option("--rate", type=click.FloatRange(0.1, 1e6), default=200.0, show_default=True,
              help="requests a second per token (429 with Retry-After past it)")
@click.option("--jaeger-url", envvar="LINEAGE_JAEGER_URL", default=None,
              help="base URL of a Jaeger UI holding the runs' traces: the run pages link to "
              "<URL>/trace/<run id> (LINEAGE_JAEGER_URL)")
@click.option("--failed-auth-rate", type=click.FloatRange(0.01, 1e6), default=2.0,
              show_default=True, help="requests failing authentication a second per client "
              "address, after a burst of 30 times that (429 before any token lookup past it)")
def _serve(cli: Invocation, host: str, port: int, max_body_mb: int, rate: float,
           jaeger_url: str | None, failed_auth_rate: float) -> int:
    import uvicorn

    from lineage.adapters.server.app import create_app
    from lineage.adapters.server.core import ServerCore
    from lineage.adapters.server.limits import Limits, MiB
    from lineage.adapters.server.web import WebSettings

    limits = Limits(body_bytes=max_body_mb * MiB, decoded_bytes=8 * max_body_mb * MiB,
                    rate_per_s=rate, burst=max(1, int(2 * rate)),
                    failed_auth_per_s=failed_auth_rate,
                    failed_auth_burst=max(1, int(30 * failed_auth_rate)))
    app = create_app(ServerCore(cli.db), limits, WebSettings(jaeger_url))
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
    return 0


@group("tokens", "create, list and revoke the server's bearer tokens")
def _tokens(cli: Invocation) -> int:
    return 0


def _token_store(cli: Invocation) -> Any:
    from lineage.adapters.server.tokens import TokenStore
    from lineage.bootstrap import open_store

    store = open_store(cli.db or _default_db())
    return TokenStore(store.database.engine())


def _default_db() -> str:
    from lineage.config import Settings

    return Settings.load().database_url


@command("create", "a new token (printed once; only its hash is stored)")
@click.option("--tenant", required=True)
@click.option("--actor", required=True, help="who the events written with it are by")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["read", "write", "admin"]),
              default=("read", "write"), show_default=True)
@click.option("--expires", default=None, help="refused after this: a duration (90m, 12h, 30d, "
              "2w) or an ISO time with a zone; default never")
@json_option
def _create(cli: Invocation, tenant: str, actor: str, scopes: tuple[str, ...],
            expires: str | None) -> int:
    from lineage.adapters.server.tokens import expiry

    when = expiry(expires)
    token = _token_store(cli).create(tenant, actor, list(scopes), when)
    if cli.json:
        print_json({"token": token, "tenant": tenant, "actor": actor, "scopes": list(scopes),
                    "expires_at": None if when is None else when.isoformat()})
    else:
        click.echo(token)
    return 0


@command("list", "the tokens (never their secrets)")
@click.option("--tenant", default=None)
@json_option
def _list(cli: Invocation, tenant: str | None) -> int:
    rows = _token_store(cli).list(tenant)
    if cli.json:
        print_json(rows)
    for row in [] if cli.json else rows:
        click.echo(f"{row['id']}  {row['tenant_id']}  {row['actor']}  "
                   f"{','.join(row['scopes'])}  {_state(row)}")
    return 0


def _state(row: dict[str, Any]) -> str:
    if row["state"] == "revoked":
        return f"revoked {row['revoked_at']}"
    if row["expires_at"] is None:
        return "live"
    return f"{'live until' if row['state'] == 'live' else 'expired'} {row['expires_at']}"


@command("revoke", "revoke a token by its id (the third part of the token)")
@click.argument("token_id")
def _revoke(cli: Invocation, token_id: str) -> int:
    if not _token_store(cli).revoke(token_id):
        fail(f"no live token {token_id!r}")
        return 1
    click.echo(f"revoked {token_id}")
    return 0


@command("sync", "send what remote trackers left in this machine's spool to the server")
@click.option("--url", envvar="LINEAGE_URL", required=True, help="the server (LINEAGE_URL)")
@click.option("--token", envvar="LINEAGE_TOKEN", default=None, help="(LINEAGE_TOKEN)")
@click.option("--spool-dir", default=None, help="(LINEAGE_SPOOL_DIR, else ~/.cache/lineage/spool)")
@click.option("--timeout", type=click.FloatRange(0.1, 86400), default=60.0, show_default=True)
@json_option
def _sync(cli: Invocation, url: str, token: str | None, spool_dir: str | None,
          timeout: float) -> int:
    from lineage.bootstrap_remote import sync

    sent = sync(url, token=token, spool=spool_dir, timeout_s=timeout)
    if cli.json:
        print_json({"sent": sent})
    else:
        click.echo(f"sent {sent} spooled item(s) to {url}")
    return 0
