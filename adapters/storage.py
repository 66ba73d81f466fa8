"""ArtifactStorage adapters: the local filesystem (``file://``) and an in-memory fake.

Both refuse to delete bytes that no longer hash to what was registered (a path reused for a
newer checkpoint keeps the newer one; a file this process wrote and hashed while writing,
unchanged since, is not read again) and treat a missing file as ``already_gone``: deletion is
idempotent, so a repair after a crash can simply try again.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from lineage.application.artifacts import vouched_sha256
from lineage.ports import Deletion

CHUNK = 1024 * 1024


def _remote(uri: str) -> Deletion:
    scheme = urlparse(uri).scheme or "?"
    return Deletion("remote", f"{scheme}:// uri: marked retired only; lineage never deletes "
                              "remote bytes")


class LocalArtifactStorage:
    """Files named by ``file://`` uris on this machine."""

    def manages(self, uri: str) -> bool:
        return urlparse(uri).scheme == "file"

    def path(self, uri: str) -> Path:
        if not self.manages(uri):
            raise ValueError(f"{uri!r} is not a file:// uri")
        return Path(unquote(urlparse(uri).path))

    def digest(self, uri: str, algorithm: str = "sha256") -> str | None:
        path = self.path(uri)
        if not path.is_file():
            return None
        digest = hashlib.new(algorithm)
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def delete(self, uri: str, expected: tuple[str, str] | None = None) -> Deletion:
        if not self.manages(uri):
            return _remote(uri)
        path = self.path(uri)
        try:
            if not path.exists():
                return Deletion("already_gone", f"{path} was already gone")
            if expected is not None:
                algorithm, digest = expected
                actual = self._current_digest(path, uri, algorithm)
                if actual != digest:
                    return Deletion("content_changed", f"{path} now holds other bytes "
                                                       f"({algorithm}:{(actual or '')[:12]}...); kept")
            path.unlink()
        except FileNotFoundError:
            return Deletion("already_gone", f"{path} was already gone")
        except OSError as error:
            return Deletion("failed", f"could not delete {path}: {error}")
        return Deletion("deleted", f"deleted {path}")

    def _current_digest(self, path: Path, uri: str, algorithm: str) -> str | None:
        """The file's digest: the one this process computed while writing it when the file is
        unchanged since (``vouched_sha256``: the trust registering it relies on), else read."""
        vouched = vouched_sha256(path) if algorithm == "sha256" else None
        return vouched[1] if vouched is not None else self.digest(uri, algorithm)


class MemoryArtifactStorage:
    """The fake: bytes by uri, for the schemes given (``file`` by default, so tests can
    register real temporary files and still check what retention deletes)."""

    def __init__(self, schemes: tuple[str, ...] = ("file",)) -> None:
        self.schemes = schemes
        self.blobs: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def put(self, uri: str, data: bytes) -> str:
        with self._lock:
            self.blobs[uri] = data
        return uri

    def manages(self, uri: str) -> bool:
        return urlparse(uri).scheme in self.schemes

    def digest(self, uri: str, algorithm: str = "sha256") -> str | None:
        if not self.manages(uri):
            raise ValueError(f"{uri!r} is not managed here")
        with self._lock:
            data = self.blobs.get(uri)
        return None if data is None else hashlib.new(algorithm, data).hexdigest()

    def delete(self, uri: str, expected: tuple[str, str] | None = None) -> Deletion:
        if not self.manages(uri):
            return _remote(uri)
        with self._lock:
            data = self.blobs.get(uri)
            if data is None:
                return Deletion("already_gone", f"{uri} was already gone")
            if expected is not None and hashlib.new(expected[0], data).hexdigest() != expected[1]:
                return Deletion("content_changed", f"{uri} now holds other bytes; kept")
            del self.blobs[uri]
            self.deleted.append(uri)
        return Deletion("deleted", f"deleted {uri}")
