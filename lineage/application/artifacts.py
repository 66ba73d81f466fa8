"""Describing an artifact before it is registered: where it is, how big, what it hashes to.

Local paths and ``file://`` uris are sized and hashed here (SHA-256, streamed in 1 MiB chunks,
any size); remote uris are recorded as given, with the caller's checksum if they have one. This
runs in the caller's thread, before anything is queued, so a bad path is an immediate error.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from uuid import UUID

from lineage.application import validation
from lineage.domain import ids
from lineage.errors import ChecksumMismatchError, ValidationError

REMOTE_SCHEMES = tuple(validation.REMOTE_URI_FORMS)
CHUNK = 1024 * 1024
_WRITTEN_MAX = 256  # files whose writer vouched for their digest (see ``vouch_sha256``)
_written: OrderedDict[tuple[str, int, int, int, int, int], str] = OrderedDict()
_written_lock = threading.Lock()


@dataclass(frozen=True)
class Location:
    """The normalised location of an artifact and what we know of its content."""

    uri: str
    local_path: Path | None
    size: int | None
    checksum_algorithm: str | None
    checksum: str | None

    def artifact_id(self, tenant_id: str, run_id: UUID | None, step: int | None) -> UUID:
        """The id of the artifact at this location with this content, produced by ``run_id``
        at ``step`` (see ``lineage.domain.ids.artifact_id``: never the content alone)."""
        known = (self.checksum_algorithm, self.checksum) if (
            self.checksum_algorithm and self.checksum) else None
        return ids.artifact_id(tenant_id, self.uri, known, run_id, step)


# Locations already described elsewhere (uri -> Location): while set (``declared_locations``),
# ``locate`` opens no file; a local path or file:// uri not declared is refused. The server runs
# commands so (a uri a client sends is data, never opened); a remote tracker too, so a file it
# hashed once is not hashed again.
_DECLARED: ContextVar[Mapping[str, Location] | None] = ContextVar("declared_locations",
                                                                  default=None)


@contextmanager
def declared_locations(locations: Mapping[str, Location]) -> Iterator[None]:
    """Within the block, ``locate`` answers from ``locations`` and never touches the disk."""
    token = _DECLARED.set(locations)
    try:
        yield
    finally:
        _DECLARED.reset(token)


def sha256_file(path: Path) -> tuple[int, str]:
    """(size, hex digest) of a file, streamed."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _stat_key(path: Path) -> tuple[str, int, int, int, int, int]:
    st = path.stat()
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def vouch_sha256(path: str | os.PathLike[str], digest: str) -> None:
    """Record that this process just wrote ``path`` and hashed its bytes while writing them
    (``digest``: hex SHA-256), so registering it does not read the file again. Only this exact
    file is trusted: another inode, size, mtime or ctime (the file replaced or written again)
    is hashed as usual. Thread-safe; keeps the last 256 files."""
    key = _stat_key(Path(path).expanduser().resolve())
    with _written_lock:
        _written[key] = digest
        _written.move_to_end(key)
        while len(_written) > _WRITTEN_MAX:
            _written.popitem(last=False)


def vouched_sha256(path: Path) -> tuple[int, str] | None:
    """(size, hex digest) of ``path`` as this process wrote it (``vouch_sha256``), while the
    file is unchanged since (same inode, size, mtime and ctime); None otherwise (then only
    reading it tells). Raises OSError when the file cannot be stat'ed."""
    key = _stat_key(path)
    with _written_lock:
        digest = _written.get(key)
    return None if digest is None else (key[3], digest)


def _sha256_of(path: Path) -> tuple[int, str]:
    """(size, hex digest), from what the writer vouched for when the file is unchanged."""
    return vouched_sha256(path) or sha256_file(path)


def hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def locate(target: str | os.PathLike[str], *, checksum: str | None = None,
           size: int | None = None, field: str = "uri") -> Location:
    """Resolve ``target`` (a path or a uri) and describe it. Raises ValidationError naming
    ``field`` for a missing or unreadable local file, a remote uri that does not name what its
    scheme needs (``validation.remote_uri``), a malformed or mismatching checksum, a bad size."""
    supplied = validation.checksum(checksum, "checksum") if checksum is not None else None
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                             or not 0 <= size <= validation.INT64_MAX):
        raise ValidationError("size", "must be a non-negative integer number of bytes that fits "
                                      "in 64 bits", size)
    try:
        text = os.fspath(target)
    except TypeError:
        raise ValidationError(field, f"must be a path or uri, not {type(target).__name__}",
                              target) from None
    if not isinstance(text, str):
        raise ValidationError(field, "must be a path or uri as a string, not bytes", target)
    validation.text(text, field, max_length=validation.URI_MAX)
    try:
        scheme = urlparse(text).scheme.lower()
    except ValueError as error:
        raise ValidationError(field, f"is not a valid path or uri ({error})", text) from None
    if scheme in REMOTE_SCHEMES:
        algorithm, digest = supplied if supplied else (None, None)
        return Location(validation.remote_uri(text, field), None, size, algorithm, digest)
    declared = _DECLARED.get()
    if declared is not None:
        return _declared(declared, text, supplied, field)
    if scheme == "file":
        path = Path(unquote(urlparse(text).path))
    elif scheme and len(scheme) > 1:
        raise ValidationError(
            field, f"unsupported uri scheme {scheme!r}; use a local path, file:// or one of "
            f"{', '.join(s + '://' for s in REMOTE_SCHEMES)}", text)
    else:
        path = Path(text)
    try:
        return _locate_local(path.expanduser().resolve(), supplied, field)
    except (OSError, RuntimeError, ValueError) as error:  # unreadable, too long, symlink loop
        if isinstance(error, ValidationError):
            raise
        raise ValidationError(field, f"cannot read {text!r}: {error}", text) from None


def _declared(declared: Mapping[str, Location], text: str, supplied: tuple[str, str] | None,
              field: str) -> Location:
    found = declared.get(text)
    if found is None:
        raise ValidationError(field, "a local path or file:// uri is data here (never opened): "
                              "it must come with its size and checksum", text)
    if supplied is not None and (found.checksum_algorithm, found.checksum) != supplied:
        raise ChecksumMismatchError("checksum", f"{supplied[0]}:{supplied[1]}",
                                    f"{found.checksum_algorithm}:{found.checksum}", text)
    return found


def _locate_local(path: Path, supplied: tuple[str, str] | None, field: str) -> Location:
    if not path.exists():
        raise ValidationError(field, f"local file {path} does not exist", str(path))
    if not path.is_file():
        raise ValidationError(field, f"{path} is not a regular file", str(path))
    size, digest = _sha256_of(path)
    if supplied is not None:
        algorithm, expected = supplied
        actual = digest if algorithm == "sha256" else hash_file(path, algorithm)
        if actual != expected:
            raise ChecksumMismatchError("checksum", f"{algorithm}:{expected}",
                                        f"{algorithm}:{actual}", path.as_uri())
    return Location(path.as_uri(), path, size, "sha256", digest)
