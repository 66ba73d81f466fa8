"""Step events in the audit, made from the step metrics read model when asked for.

The audit projection writes no row per step (a long run has millions); ``ReadModels.audit(
include_steps=True)`` lists them from the step metrics rows, one stored block per row, with the
shape and summary an audit row of a step had: kind ``run.step_recorded``, subject the run,
summary ``step N: {metrics as strict JSON}``. Every step of a block shares its block's log
position, writer and recorded time, so every filter applies to a block as a whole.

Paging: a page never cuts a block. Blocks and audit rows are merged in log-position order and
added whole until the page holds ``limit`` rows or more, so a page may run over ``limit`` by
up to one block less one step (a block holds at most ``step_log.BLOCK_STEPS``, 1,000, of
the steps of one run that one writer commit stored). The next page starts ``after`` the
last row's position, and no step is skipped or listed twice.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import Connection, literal, select

from lineage.codec.block_peek import peek_origin
from lineage.codec.jsontext import strict_dumps
from lineage.codec.step_block import iso_us
from lineage.codec.step_decode import StepBlock, decode_block
from lineage.projections.tables import step_metrics

KIND = "run.step_recorded"
_SUMMARY_MAX = 500  # as the audit table's summaries


class StepFilter(NamedTuple):
    """The audit's filters, as they apply to steps (``since``/``until``: ISO text, as stored)."""

    after: int
    subject: str | None
    actor: str | None
    kind: str | None
    since: str | None
    until: str | None


def step_blocks(conn: Connection, where: StepFilter) -> Iterator[StepBlock]:
    """The blocks whose steps the audit lists, in log order, read lazily: a caller that stops
    early reads no further. ``subject`` and ``kind`` (a LIKE pattern, as for audit rows) are
    applied in SQL; ``actor`` and the recorded-time bounds from each block's header."""
    query = (select(step_metrics.c.data, step_metrics.c.position)
             .where(step_metrics.c.position > where.after).order_by(step_metrics.c.position))
    if where.subject is not None:
        query = query.where(step_metrics.c.run_id == where.subject)
    if where.kind is not None:
        query = query.where(literal(KIND).like(f"%{where.kind}%"))
    peek = where.actor is not None or where.since is not None or where.until is not None
    for row in conn.execute(query.execution_options(yield_per=64)):
        if peek and not _origin_matches(row.data, where):
            continue
        yield decode_block(row.data, row.position)


def _origin_matches(data: bytes, where: StepFilter) -> bool:
    origin = peek_origin(data)
    recorded_at = iso_us(origin.recorded_us)
    return ((where.actor is None or origin.actor == where.actor)
            and (where.since is None or recorded_at >= where.since)
            and (where.until is None or recorded_at <= where.until))


def merged(rows: Iterable[dict[str, Any]], blocks: Iterable[StepBlock],
           limit: int) -> list[dict[str, Any]]:
    """Audit ``rows`` and the steps of ``blocks`` (each in log order) in log order: a page of
    ``limit`` rows or more, never cutting a block (the module doc)."""
    page: list[dict[str, Any]] = []
    entries = heapq.merge(((row["position"], row) for row in rows),
                          ((block.position, block) for block in blocks),
                          key=lambda entry: entry[0])
    for _, entry in entries:
        if len(page) >= limit:
            break
        if isinstance(entry, StepBlock):
            page.extend(step_rows(entry))
        elif isinstance(entry, dict):
            page.append(entry)
    return page


def step_rows(block: StepBlock) -> list[dict[str, Any]]:
    """Each step of ``block`` as an audit row (the ``lineage_audit`` columns, in order)."""
    run_id, recorded_at = str(block.run_id), block.recorded_at
    return [{"position": block.position, "event_id": str(block.step_id(i)),
             "occurred_at": block.occurred_at(i), "recorded_at": recorded_at,
             "tenant_id": block.tenant_id, "actor": block.actor, "source": block.source,
             "kind": KIND, "subject_type": "run", "subject_id": run_id, "run_id": run_id,
             "summary": f"step {block.steps[i]}: {strict_dumps(block.metrics(i))}"[:_SUMMARY_MAX]}
            for i in range(block.count)]
