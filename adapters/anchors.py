"""Anchors: each seal published outside the database, where whoever can rewrite the database
cannot reach (``lineage.application.sealing.Anchor``).

- ``FileAnchor``: one JSON line per seal appended to a file (opened for appending, flushed and
  fsynced per line), for a write-once bucket, another host or a notary's inbox;
- ``StreamAnchor``: the same line to a stream (stdout), for a pipe to an external notary;
- ``OtlpAnchor``: a ``seal log`` span whose ``lineage.seal.*`` attributes hold the head and
  ``lineage.seal.anchor`` the whole line, sent through an OTLP transport to a trace backend.

``read_anchors`` reads a file of such lines back for ``lineage verify --anchor``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from lineage.errors import ConfigurationError
from lineage.proof.seals import TreeHead
from lineage.spans.seal_span import seal_span


class FileAnchor:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def publish(self, head: TreeHead) -> None:
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(head.anchor_line() + "\n")
            file.flush()
            os.fsync(file.fileno())


class StreamAnchor:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def publish(self, head: TreeHead) -> None:
        self.stream.write(head.anchor_line() + "\n")
        self.stream.flush()


class OtlpAnchor:
    """Sends each seal as a span through ``transport`` (``lineage.adapters.otlp.transport``),
    encoded by ``encoder``; a failed export raises (the seal is stored: publish it again with
    ``lineage verify --from N --to N`` prints any stored seal again)."""

    def __init__(self, encoder: Any, transport: Any) -> None:
        self.encoder, self.transport = encoder, transport

    def publish(self, head: TreeHead) -> None:
        self.transport.export(self.encoder.encode([seal_span(head)]))


def read_anchors(path: str | os.PathLike[str]) -> list[TreeHead]:
    """The heads in an anchor file; ConfigurationError naming the file and line when one is
    not an anchor line (blank lines are skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"--anchor: cannot read {path}: {error.strerror}") from None
    heads = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            heads.append(TreeHead.of_anchor(line))
        except ValueError as error:
            raise ConfigurationError(f"--anchor: {path} line {number}: {error}") from None
    return heads
