"""The composition root of a remote tracker (``lineage.Tracker("http://host:port",
token=...)``): the spool, the httpx transport, the shipper and the read API over HTTP, pushed
into a ``RemoteTracker``. Also what ``lineage sync`` uses to send orphan spools.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from uuid import UUID, uuid4

from lineage.application.tracker import TrackerParts
from lineage.codec.mapper import make_mapper
from lineage.config import Settings
from lineage.config.remote import remote_setting
from lineage.domain.envelope import Origin
from lineage.errors import ConfigurationError, ValidationError
from lineage.remote.shipper import Shipper
from lineage.remote.tracker import (
    RemoteEndpoint,
    RemoteHeartbeats,
    RemoteReadModels,
    RemoteTracker,
    ServerSideRetention,
    SpoolRecorder,
)


def spool_dir(url: str, given: str | os.PathLike[str] | None = None) -> Path:
    """Where the spools of trackers of ``url`` live: ``given``, else ``LINEAGE_SPOOL_DIR``,
    else ``~/.cache/lineage/spool``; one folder per server."""
    base = Path(remote_setting("spool_dir", os.fspath(given) if given else None))
    return base / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def server_url(url: str) -> str:
    """``url`` without a trailing slash; ValidationError when it is not an http(s) URL with a
    host."""
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 (parsing the port raises for a malformed one)
    except ValueError as error:
        raise ValidationError("database_url", f"{url!r} is not a database URL or a server URL "
                              f"({error})", url) from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError("database_url", f"{url!r} is not a database URL or a server URL "
                              "(http(s)://host[:port])", url)
    return url.rstrip("/")


def token_from(token: str | None) -> str:
    found = token or remote_setting("token")
    if not found:
        raise ConfigurationError("a remote tracker needs a token: pass token=... or set "
                                 "LINEAGE_TOKEN (from `lineage tokens create` on the server)")
    return found


def _shipper(url: str, secret: str, tenant: str, spool: str | os.PathLike[str] | None,
             client: Any = None, **options: Any) -> tuple[Shipper, int]:
    """What a remote tracker and ``lineage sync`` both set up: a shipper to the server at
    ``url`` (through ``client``, else an httpx one) of a new spool and of the spools left over
    by earlier trackers of this server and tenant; and how many items those hold."""
    from lineage.adapters.http_client import HttpxTrackerClient
    from lineage.adapters.spool import SqliteSpool, orphans

    folder = spool_dir(url, spool)
    left_over = orphans(folder, server=url, tenant=tenant)
    own = SqliteSpool.new(folder, server=url, tenant=tenant)
    return (Shipper(own, client or HttpxTrackerClient(url, secret), left_over, **options),
            sum(item.count() for item in left_over))


def remote_tracker(url: str, *, token: str | None = None,
                   spool: str | os.PathLike[str] | None = None,
                   clock: Callable[[], datetime] | None = None,
                   id_source: Callable[[], UUID] | None = None, transport: Any = None,
                   **settings: Any) -> RemoteTracker:
    """A tracker that records to, and queries, the server at ``url``."""
    url = server_url(url)
    settings.pop("create", None)  # the server owns the store: nothing to create here
    if settings.pop("export_otlp", None):
        raise ValidationError("export_otlp", "is the server's to do (lineage serve exports)")
    for name in ("store", "storage"):
        if settings.pop(name, None) is not None:
            raise ValidationError(name, "does not apply to a remote tracker (the server owns "
                                  "the store)")
    from lineage.adapters.server.tokens import tenant_of_token

    secret = token_from(token)
    tenant = tenant_of_token(secret)
    resolved = Settings.load(database_url="memory://", tenant_id=tenant, **settings)
    shipper, _ = _shipper(url, secret, tenant, spool, transport, close_wait_s=resolved.retry_for_s)
    client = shipper.transport
    origin = Origin(resolved.source, tenant, resolved.actor)
    recorder = SpoolRecorder(shipper, origin, clock=clock, new_id=id_source or uuid4)
    from lineage.bootstrap import open_artifact_storage

    return RemoteTracker(TrackerParts(
        settings=resolved, store=RemoteEndpoint(url), mapper=make_mapper(),  # type: ignore[arg-type]
        read_models=RemoteReadModels(client), storage=open_artifact_storage(),  # type: ignore[arg-type]
        recorder=recorder, retention=ServerSideRetention(recorder),  # type: ignore[arg-type]
        heartbeats=RemoteHeartbeats(recorder, resolved.heartbeat_interval_s), exporter=None))


def sync(url: str, *, token: str | None = None,
         spool: str | os.PathLike[str] | None = None, timeout_s: float = 60.0) -> int:
    """Send every orphan spool of ``url`` (left by trackers that ended before the server took
    all they recorded); returns how many items were sent. Raises StoreError when the server
    stayed unreachable for ``timeout_s``."""
    from lineage.adapters.server.tokens import tenant_of_token
    from lineage.errors import StoreError

    secret = token_from(token)
    url = server_url(url)
    shipper, total = _shipper(url, secret, tenant_of_token(secret), spool)
    try:
        shipper.flush(timeout_s)
        while shipper._spools[:-1] and shipper.offline_since is None:
            shipper.flush(timeout_s)
        if shipper.offline_since is not None or len(shipper._spools) > 1:
            raise StoreError(f"{url}: unreachable server; the spools stay in "
                             f"{spool_dir(url, spool)}",
                             "unreachable server")
    finally:
        shipper.close(5.0)
    return total
