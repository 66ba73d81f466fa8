"""A seal as a span (``seal log``): what ``lineage seal --otlp`` sends and what the background
OTLP exporter sends when a seal event passes through the export, the same record both ways
(trace id the seal stream's, span id from the root), so a backend holds one span per seal."""

from __future__ import annotations

import hashlib

from lineage.domain.seals import SEAL_STREAM
from lineage.proof.seals import TreeHead
from lineage.spans.model import SpanRecord

SEAL_SPAN = "seal log"


def seal_span(head: TreeHead) -> SpanRecord:
    """The span of one seal: ``lineage.seal.number``, ``.size``, ``.root`` (hex),
    ``.public_key`` (hex) and ``.anchor`` (the whole anchor line, ``TreeHead.anchor_line``)."""
    at = head.sealed_at_us * 1000
    return SpanRecord(
        trace_id=SEAL_STREAM.bytes, span_id=hashlib.sha256(head.root).digest()[:8],
        parent_span_id=b"", name=SEAL_SPAN, start_ns=at, end_ns=at,
        attributes=(("lineage.seal.number", head.number), ("lineage.seal.size", head.size),
                    ("lineage.seal.root", head.root.hex()),
                    ("lineage.seal.public_key", head.public_key.hex()),
                    ("lineage.seal.anchor", head.anchor_line())))
