"""Ed25519 keys for seals, on the ``cryptography`` package (the ``verify`` extra).

The operator provides the private key: a PEM (PKCS#8) file, unencrypted, readable by the sealer
alone (``lineage seal keygen FILE`` writes one with mode 0600). Verifiers need only the public
key: 64 hex digits (``lineage seal keygen`` prints it), a PEM public key file, or the private
key file itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from lineage.errors import ConfigurationError

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
except ImportError as missing:  # pragma: no cover - the extra is part of the test install
    raise ConfigurationError(
        "signing seals needs the cryptography package: pip install 'lineage[verify]'") from missing

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class Ed25519Signer:
    """Signs tree heads with one private key. Thread-safe."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: bytes = key.public_key().public_bytes(*RAW)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Ed25519Signer:
        """ConfigurationError naming the file when it cannot be read or holds no Ed25519
        private key."""
        key = _load_private(Path(path))
        return cls(key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def check_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s (raw 32 bytes) Ed25519 signature of
    ``message``; False for a malformed key or signature."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_key(path: str | os.PathLike[str]) -> bytes:
    """Write a new private key to ``path`` (PEM, mode 0600; an existing file is refused) and
    return its public key (raw)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise ConfigurationError(f"cannot write the key to {path}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return key.public_key().public_bytes(*RAW)


def load_public_key(value: str) -> bytes:
    """A public key given as 64 hex digits, a PEM public key file or a private key file."""
    text = value.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    path = Path(text)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"public key: {value!r} is neither 64 hex digits nor a "
                                 f"readable key file ({error.strerror})") from None
    if b"PRIVATE KEY" in data:
        return _load_private(path).public_key().public_bytes(*RAW)
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError:
        public = None
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigurationError(f"public key: {path} holds no Ed25519 public key")
    return public.public_bytes(*RAW)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise ConfigurationError(f"seal key: cannot read {path}: {error.strerror}") from None
    except (ValueError, TypeError) as error:
        raise ConfigurationError(f"seal key: {path} is not an unencrypted PEM private key "
                                 f"({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"seal key: {path} holds a {type(key).__name__}, not an "
                                 "Ed25519 private key")
    return key
