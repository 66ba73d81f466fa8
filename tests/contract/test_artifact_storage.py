"""The ArtifactStorage port: one set of cases for the in-memory fake and the local filesystem."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lineage.adapters.storage import LocalArtifactStorage, MemoryArtifactStorage
from lineage.ports import ArtifactStorage


@dataclass
class Subject:
    storage: ArtifactStorage
    put: Callable[[str, bytes], str]  # (name, bytes) -> uri the storage manages
    clobber: Callable[[str, bytes], None]  # replace the bytes at a uri


@pytest.fixture(params=["memory", "local"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    if request.param == "memory":
        fake = MemoryArtifactStorage()
        return Subject(fake, lambda name, data: fake.put((tmp_path / name).as_uri(), data),
                       lambda uri, data: fake.put(uri, data) and None)

    def put(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return path.as_uri()

    def clobber(uri: str, data: bytes) -> None:
        LocalArtifactStorage().path(uri).write_bytes(data)

    return Subject(LocalArtifactStorage(), put, clobber)


def sha(data: bytes) -> tuple[str, str]:
    return "sha256", hashlib.sha256(data).hexdigest()


def test_digest_of_present_and_missing_bytes(subject: Subject, tmp_path: Path) -> None:
    uri = subject.put("a.bin", b"weights")

    assert subject.storage.manages(uri)
    assert subject.storage.digest(uri) == sha(b"weights")[1]
    assert subject.storage.digest(uri, "md5") == hashlib.md5(b"weights").hexdigest()
    assert subject.storage.digest((tmp_path / "missing.bin").as_uri()) is None


def test_delete_is_idempotent(subject: Subject) -> None:
    uri = subject.put("a.bin", b"weights")

    first = subject.storage.delete(uri, sha(b"weights"))
    second = subject.storage.delete(uri, sha(b"weights"))

    assert first.outcome == "deleted"
    assert second.outcome == "already_gone"  # an outcome, not an error
    assert subject.storage.digest(uri) is None


def test_bytes_that_changed_are_kept(subject: Subject) -> None:
    uri = subject.put("latest.bin", b"old checkpoint")
    subject.clobber(uri, b"new checkpoint, same path")

    deletion = subject.storage.delete(uri, sha(b"old checkpoint"))

    assert deletion.outcome == "content_changed"
    assert subject.storage.digest(uri) == sha(b"new checkpoint, same path")[1]


def test_delete_without_an_expected_digest(subject: Subject) -> None:
    uri = subject.put("a.bin", b"x")
    assert subject.storage.delete(uri).outcome == "deleted"


@pytest.mark.parametrize("uri", ["s3://bucket/ckpt.safetensors", "tinker://run/1/weights",
                                 "https://example.com/ckpt.bin"])
def test_remote_uris_are_never_deleted(subject: Subject, uri: str) -> None:
    assert not subject.storage.manages(uri)
    deletion = subject.storage.delete(uri, None)
    assert deletion.outcome == "remote"
    assert "marked retired only" in deletion.detail
    with pytest.raises(ValueError):
        subject.storage.digest(uri)


def test_local_storage_reports_a_failed_delete_as_an_outcome(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt.safetensors"  # a directory where a file was expected
    folder.mkdir()

    deletion = LocalArtifactStorage().delete(folder.as_uri())

    assert deletion.outcome == "failed" and "could not delete" in deletion.detail
    assert folder.exists()


def test_local_storage_trusts_the_digest_its_writer_vouched_for_and_reads_changed_files(
        tmp_path: Path) -> None:
    """A file this process wrote and hashed while writing (``write_atomic``) is deleted without
    being read again while it is unchanged; rewritten, it is read, and kept when its bytes
    differ from the expected ones."""
    from lineage.integrations.files import write_atomic

    class Unreadable(LocalArtifactStorage):
        def digest(self, uri: str, algorithm: str = "sha256") -> str | None:
            raise AssertionError(f"read {uri} again")

    path = tmp_path / "ckpt.bin"
    _, digest = write_atomic(path, [b"weights"])
    assert Unreadable().delete(path.as_uri(), ("sha256", digest)).outcome == "deleted"

    _, digest = write_atomic(path, [b"weights"])
    path.write_bytes(b"other weights")  # rewritten in place: the vouched digest no longer holds
    deletion = LocalArtifactStorage().delete(path.as_uri(), ("sha256", digest))
    assert deletion.outcome == "content_changed" and path.read_bytes() == b"other weights"
