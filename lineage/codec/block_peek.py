"""Cheap reads of a stored step block's leading sections, without decoding the whole block.

A block (``lineage.codec.step_block``) is a zlib stream whose body starts with the header,
the three origin texts and the steps. These functions decompress only as far as they need:
``peek_count`` the header's first field (how many steps: what the projection runner sizes its
batches by), ``peek_origin`` the header and texts (who wrote the block, and when: what the
audit filters on), ``peek_ends`` also the steps, for the first and last step numbers (what a downsampled
metric history needs from a block whose values its summary already gives). About 10 and 30 µs
a block, against ~350 µs for ``decode_block`` of a thousand steps. Pure; ValueError for bytes
that are not a block.
"""

from __future__ import annotations

import zlib
from array import array
from typing import Any

# The layout is step_block's: its header struct is shared here, not restated.
from lineage.codec.step_block import HEADER, Origin
from lineage.codec.step_decode import split

_FIRST_READ = HEADER.size + 256  # the header and, usually, the three texts


def _prefix(state: bytes, steps: bool) -> tuple[tuple[Any, ...], bytes]:
    """The header's fields and the body up to the end of the texts (and of the steps, with
    ``steps``): at most two calls into zlib, the rest of the block left compressed."""
    packed, _ = split(state)
    stream = zlib.decompressobj()
    try:
        body = stream.decompress(packed, _FIRST_READ)
        if len(body) < HEADER.size:
            raise ValueError("corrupt step block: block ends early")
        fields = HEADER.unpack_from(body)
        size = HEADER.size + sum(fields[6:]) + (8 * fields[0] if steps else 0)
        if len(body) < size:
            body += stream.decompress(stream.unconsumed_tail, size - len(body))
    except zlib.error as error:
        raise ValueError(f"corrupt step block: {error}") from None
    if len(body) < size:
        raise ValueError("corrupt step block: block ends early")
    return fields, body


def peek_count(state: bytes) -> int:
    """How many steps the block holds (the header's first field, ``<I``): one small zlib call,
    whatever the block's size."""
    packed, _ = split(state)
    try:
        head = zlib.decompressobj().decompress(packed, 4)
    except zlib.error as error:
        raise ValueError(f"corrupt step block: {error}") from None
    if len(head) < 4:
        raise ValueError("corrupt step block: block ends early")
    return int.from_bytes(head, "little")


def peek_origin(state: bytes) -> Origin:
    """Who wrote the block and when (``recorded_us``, source, tenant, actor)."""
    fields, body = _prefix(state, steps=False)
    texts, at = [], HEADER.size
    for size in fields[6:]:
        texts.append(body[at:at + size])
        at += size
    try:
        source, tenant_id, actor = (text.decode() for text in texts)
    except UnicodeDecodeError as error:
        raise ValueError(f"corrupt step block: {error}") from None
    return Origin(fields[3], source, tenant_id, actor)


def peek_ends(state: bytes) -> tuple[int, int]:
    """The block's first and last step numbers (``steps[0]``, ``steps[-1]``)."""
    fields, body = _prefix(state, steps=True)
    at = HEADER.size + sum(fields[6:])
    differences = array("q")
    differences.frombytes(body[at:at + 8 * fields[0]])
    if not differences:
        raise ValueError("corrupt step block: no steps")
    return differences[0], sum(differences)
