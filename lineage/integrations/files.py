"""Files the integrations write: atomically (temporary file, fsync, rename, folder fsync) and
hashed while written; checkpoint folders described by a manifest.

A write killed half-way leaves its temporary file (``.NAME.HOST-PID.XXXXXXXX.tmp``: this
machine's mark, then the writing process's id). The first write of a process into a folder
removes those whose process is gone on this machine (``sweep_temporary_files``); another
machine's, a live process's and anything else are left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lineage.application.artifacts import sha256_file, vouch_sha256

MANIFEST_NAME = "lineage-manifest.json"
MANIFEST_FORMAT = "lineage-manifest/1"

log = logging.getLogger(__name__)

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]{1,7})\.[A-Za-z0-9_]+\.tmp$")
_swept: set[Path] = set()  # folders this process has swept
_swept_lock = threading.Lock()


def write_atomic(path: Path, chunks: Iterable[bytes | memoryview]) -> tuple[int, str]:
    """Write ``chunks`` to ``path`` through a temporary file beside it that is fsynced and
    renamed over it (then the folder fsynced): ``path`` is the old file or the whole new one,
    never a torn one. Returns (size, SHA-256 hex) of the bytes written, hashed as they were
    written, and vouches for them (registering the file does not read it again). On any error
    (one raised by ``chunks`` too) the target is left as it was and the temporary file
    removed."""
    digest = hashlib.sha256()
    size = 0
    _sweep_once(path.parent)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp",
                                dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    vouch_sha256(path, digest.hexdigest())
    return size, digest.hexdigest()


def sweep_temporary_files(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` that ``write_atomic`` calls killed half-way
    left: those of this machine whose process is gone. Returns the paths removed."""
    removed: list[Path] = []
    if os.name != "posix":  # os.kill(pid, 0) asks about a process only on POSIX
        return removed
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = _TEMPORARY.match(entry.name)
        if found is None or found["host"] != _HOST or _alive(int(found["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as error:
            log.warning("lineage: cannot remove the temporary file %s a killed write left: %s",
                        entry.path, error)
            continue
        removed.append(Path(entry.path))
    if removed:
        log.info("lineage: removed %d temporary file(s) killed writes left in %s: %s",
                 len(removed), folder, ", ".join(p.name for p in removed))
    return removed


def _sweep_once(folder: Path) -> None:
    with _swept_lock:
        if folder in _swept:
            return
        _swept.add(folder)
    sweep_temporary_files(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's process
        return True
    return True


def fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable enough there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def folder_files(folder: Path) -> list[dict[str, Any]]:
    """Each regular file under ``folder`` (the manifest and temporary files left out), sorted
    by path: ``{"path": relative posix path, "size": bytes, "sha256": hex}``."""
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME and not path.name.endswith(".tmp"):
            size, digest = sha256_file(path)
            entries.append({"path": path.relative_to(folder).as_posix(), "size": size,
                            "sha256": digest})
    return entries


def write_manifest(folder: Path) -> tuple[Path, str, list[dict[str, Any]]]:
    """Describe a checkpoint folder in ``MANIFEST_NAME`` inside it (each file's path, size and
    SHA-256); returns (manifest path, its SHA-256: the folder's checksum, the entries)."""
    entries = folder_files(folder)
    body = json.dumps({"format": MANIFEST_FORMAT, "files": entries}, indent=1, sort_keys=True)
    path = folder / MANIFEST_NAME
    _, digest = write_atomic(path, [body.encode()])
    return path, digest, entries


def manifest_differences(folder: Path) -> list[str]:
    """How the folder differs from its manifest (empty when every file is as recorded):
    ``missing``, ``changed`` and ``added`` files, by path."""
    recorded = json.loads((folder / MANIFEST_NAME).read_text())["files"]
    want = {entry["path"]: (entry["size"], entry["sha256"]) for entry in recorded}
    have = {entry["path"]: (entry["size"], entry["sha256"]) for entry in folder_files(folder)}
    return ([f"missing {p}" for p in sorted(want.keys() - have.keys())]
            + [f"changed {p}" for p in sorted(want.keys() & have.keys()) if want[p] != have[p]]
            + [f"added {p}" for p in sorted(have.keys() - want.keys())])
