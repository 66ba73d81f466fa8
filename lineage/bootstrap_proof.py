"""The composition root of sealing and verification: a ``Sealer`` and a ``Verifier`` built
from settings over a store (see ``lineage.application.sealing`` and ``verification``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from lineage.bootstrap import Origin, Settings, make_mapper, open_positions, open_store
from lineage.ports import EventStore


def open_sealer(store: EventStore, *, key: str | None = None, anchors: Any = (),
                **overrides: Any) -> Any:
    """A ``lineage.application.sealing.Sealer`` of ``store`` signing with the key file ``key``
    (else ``LINEAGE_SEAL_KEY``), publishing to ``anchors`` (objects with ``publish``) and to
    ``LINEAGE_SEAL_ANCHOR``'s file. ConfigurationError when no key is set or it cannot be read."""
    from lineage.adapters.anchors import FileAnchor
    from lineage.adapters.signing import Ed25519Signer
    from lineage.application.sealing import Sealer
    from lineage.config.sealing import SealSettings
    from lineage.errors import ConfigurationError

    seal = SealSettings.load(key=key, **overrides)
    if not seal.key:
        raise ConfigurationError("sealing needs a private key: pass --key FILE or set "
                                 "LINEAGE_SEAL_KEY (lineage seal --new-key FILE makes one)")
    settings = Settings.load()
    published = [*anchors, *([FileAnchor(seal.anchor)] if seal.anchor else [])]
    return Sealer(store, make_mapper(), Ed25519Signer.from_file(seal.key),
                  origin=Origin(settings.source, settings.tenant_id, settings.actor),
                  every_events=seal.every_events, every_s=seal.every_s, anchors=published)


def open_verifier(store: EventStore, *, public_key: Any = None) -> Any:
    """A ``lineage.application.verification.Verifier`` of ``store``: signatures checked
    against the trusted ``public_key`` (hex, raw bytes or a key file, or a list of them: a key
    and the one it was rotated to; else ``LINEAGE_SEAL_PUBLIC_KEY``, keys separated by commas;
    else the key each seal names, which is not trusted), truncation checked against the
    positions the followers tracked in the store's database. A long log in a database file or
    server is scanned by two processes (``lineage.adapters.process_scan``)."""
    from lineage.adapters.signing import check_signature, load_public_key
    from lineage.application.verification import Verifier
    from lineage.config.sealing import SealSettings

    given = public_key if public_key is not None else SealSettings.load().public_key
    if isinstance(given, bytes | str):
        given = [given] if isinstance(given, bytes) else [key for key in given.split(",") if key.strip()]
    trusted = [key if isinstance(key, bytes) else load_public_key(key) for key in given or ()]
    return Verifier(store, make_mapper(), check_signature, trusted=trusted,
                    tracked=_tracked_positions(store), first_rows=_first_rows(store))


def _first_rows(store: EventStore) -> Any:
    """A second process scanning the first rows of ``store`` (None for an in-memory store)."""
    from lineage.adapters.database import POSTGRES, SQLITE
    from lineage.adapters.process_scan import ProcessFirstRows

    database = store.database
    if database.kind == SQLITE:
        url = str(database.path)  # a bare path: no URL quoting; a file it cannot write opens
        # read-only there too, and the scan only reads
    elif database.kind == POSTGRES:
        url = database.url.update_query_dict({"schema": database.schema}).render_as_string(
            hide_password=False)
    else:
        return None
    return ProcessFirstRows(partial(scan_first_rows, url))


def scan_first_rows(url: str, end: int, sizes: frozenset[int]) -> Any:
    """The scan of the rows up to position ``end`` of the store at ``url`` (run in the second
    process: its own connection, and the mapper the settings make, as ``open_verifier``'s)."""
    from lineage.application.log_scan import scan
    from lineage.proof.canonical import LeafHasher

    store = open_store(url, create=False)
    try:
        return scan(store, set(sizes), hasher=LeafHasher.for_mapper(make_mapper()), end=end)
    finally:
        store.close()


def _tracked_positions(store: EventStore) -> dict[str, int]:
    """The followers' positions in the store's database (none for a read-only store)."""
    from lineage.projections.runner import SCHEMA_KEY

    if store.read_only:
        return {}
    engine = store.database.engine()
    try:
        return {name: at for name, at in open_positions(engine).all().items() if name != SCHEMA_KEY}
    finally:
        engine.dispose()


def anchors_from(paths: Any) -> list[Any]:
    """The tree heads in the anchor files ``paths`` (``lineage.adapters.anchors``)."""
    from lineage.adapters.anchors import read_anchors

    return [head for path in paths for head in read_anchors(path)]
