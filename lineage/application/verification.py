"""``lineage verify``: recompute the Merkle tree of the log and check every seal against it.

One pass over the stored rows (in log order, any notification ids) rebuilds the tree; at the
size of each seal (and of each anchor given) the root is compared. Before the pass, every seal
is checked on its own: its number follows the previous one, ``previous`` is the previous seal's
hash, its digests fit its size, and its Ed25519 signature is good (with the trusted public key
when one is given, else with the key the seal names, which proves nothing against someone who
can write the database: ``key_trusted`` says which). After the pass, the first seal whose root
no longer matches is explained by ``lineage.application.damage.classify``; tracked positions
(projections, exporters) beyond the end of the log, and anchors the store falls short of, show
a truncated or rolled back log; the first anchor whose root the store no longer has says where
its rows part from the anchored ones (``lineage.application.anchor_check``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eventsourcing.persistence import Mapper

from lineage.application.anchor_check import anchor_damage
from lineage.application.damage import (
    BAD_ANCHOR,
    BAD_SEAL,
    ROLLED_BACK,
    TRUNCATED,
    Damage,
    classify,
)
from lineage.application.log_scan import FirstRows, Scan, pages, scan
from lineage.application.sealing import SEAL_TOPIC
from lineage.ports import EventStore
from lineage.proof.canonical import DIGEST_BYTES, LeafHasher
from lineage.proof.seals import ZERO, TreeHead

SignatureCheck = Callable[[bytes, bytes, bytes], bool]  # (public key, message, signature)


@dataclass
class VerifyReport:
    """What ``Verifier.verify`` found. ``problems`` are in log order: the first is the first
    bad position. ``sealed`` rows are covered by a good seal, ``unsealed`` rows come after."""

    rows: int = 0
    seals: int = 0
    sealed: int = 0
    anchors: int = 0
    key_trusted: bool = False
    problems: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsealed(self) -> int:
        return max(self.rows - self.sealed, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "seals": self.seals, "sealed": self.sealed,
                "unsealed": self.unsealed, "anchors": self.anchors,
                "key_trusted": self.key_trusted,
                "first_problem": self.problems[0].to_dict() if self.problems else None,
                "problems": [problem.to_dict() for problem in self.problems]}


@dataclass
class _Seal:
    head: TreeHead
    position: int
    digests: bytes
    good: bool = True


def _located(damage: Damage, positions: Sequence[int]) -> Damage:
    """``damage`` with its leaf index found from its position when it had none."""
    if damage.leaf is not None or damage.position is None:
        return damage
    index = bisect_left(positions, damage.position)
    found = index < len(positions) and positions[index] == damage.position
    return replace(damage, leaf=index) if found else damage


class Verifier:
    """Checks one store's log; see the module doc. ``tracked``: the positions followers
    recorded (``lineage_positions``), evidence of rows that were there; ``first_rows``: where
    the first part of a long log is scanned meanwhile (``log_scan.scan``)."""

    def __init__(self, store: EventStore, mapper: Mapper, check_signature: SignatureCheck, *,
                 trusted: Collection[bytes] = (), tracked: Mapping[str, int] | None = None,
                 first_rows: FirstRows | None = None) -> None:
        self.store, self.mapper, self.check = store, mapper, check_signature
        self.trusted, self.tracked = frozenset(trusted), dict(tracked or {})
        self.first_rows = first_rows

    def hasher(self) -> LeafHasher:
        return LeafHasher.for_mapper(self.mapper)

    def seals(self, report: VerifyReport) -> list[_Seal]:
        """Every stored seal in log order, each checked on its own (problems into ``report``)."""
        found: list[_Seal] = []
        for page in pages(self.store, (SEAL_TOPIC,)):
            for row in page:
                try:
                    event: Any = self.mapper.to_domain_event(row)
                    found.append(_Seal(TreeHead.of_event(event), row.id, bytes.fromhex(event.digests)))
                except Exception as error:  # a seal row that does not decode is damage, not a crash
                    report.problems.append(Damage(BAD_SEAL, None, row.id, None,
                                                  f"the seal at position {row.id} cannot be read "
                                                  f"({type(error).__name__})"))
        previous: _Seal | None = None
        for seal in found:
            why = self._fault(seal, previous)
            if why:
                seal.good = False
                report.problems.append(Damage(BAD_SEAL, None, seal.position, seal.head.number,
                                              f"seal {seal.head.number}: {why}"))
            previous = seal
        return found

    def _fault(self, seal: _Seal, previous: _Seal | None) -> str | None:
        head = seal.head
        number, size, digest = (0, 0, ZERO) if previous is None else (
            previous.head.number, previous.head.size, previous.head.hash())
        if head.number != number + 1:
            return f"follows seal {number}: a seal is missing or out of order"
        if head.previous != digest:
            return f"does not chain to seal {number} (replaced, or seal {number} was)"
        if head.size < size or len(seal.digests) != (head.size - size) * DIGEST_BYTES:
            return f"covers {head.size} rows after seal {number}'s {size}, with digests that do not fit"
        if self.trusted and head.public_key not in self.trusted:
            return "is signed by another key than the trusted one (re-sealed without the key)"
        if not self.check(head.public_key, head.message(), head.signature):
            return "has a bad signature (forged, or changed after signing)"
        return None

    def verify(self, anchors: Sequence[TreeHead] = ()) -> VerifyReport:
        report = VerifyReport(key_trusted=bool(self.trusted), anchors=len(anchors))
        seals = self.seals(report)
        report.seals = len(seals)
        good = [seal for seal in seals if seal.good]
        anchored = [head for head in anchors if self._anchor_ok(head, report)]
        sizes = {seal.head.size for seal in good} | {head.size for head in anchored}
        log = scan(self.store, sizes, hasher=self.hasher(), first_rows=self.first_rows)
        report.rows = len(log.positions)
        recorded = bytearray()
        for seal in seals:
            if len(recorded) == (seal.head.size * DIGEST_BYTES) - len(seal.digests):
                recorded += seal.digests
        self._check_roots(good, log, recorded, report)
        self._check_anchors(anchored, seals, log, report)
        self._check_tracked(log, report)
        report.problems = sorted((_located(problem, log.positions) for problem in report.problems),
                                 key=Damage.order)
        return report

    def _check_roots(self, good: list[_Seal], log: Scan, recorded: bytearray,
                     report: VerifyReport) -> None:
        start = 0
        for seal in good:
            size = seal.head.size
            if log.roots.get(size) != seal.head.root:
                report.problems.append(classify(log.digests, recorded, log.positions, start,
                                                size, seal.head.number))
                return  # everything after the first damage is shifted: one report
            report.sealed, start = size, size

    def _anchor_ok(self, head: TreeHead, report: VerifyReport) -> bool:
        if self.check(head.public_key, head.message(), head.signature) and (
                not self.trusted or head.public_key in self.trusted):
            return True
        report.problems.append(Damage(BAD_ANCHOR, None, None, head.number,
                                      f"the anchor of seal {head.number} is not signed by the "
                                      "trusted key"))
        return False

    def _check_anchors(self, anchored: Sequence[TreeHead], seals: Sequence[_Seal], log: Scan,
                       report: VerifyReport) -> None:
        stored = {seal.head.number: seal for seal in seals}
        last = max(stored, default=0)
        rows = len(log.positions)
        for head in anchored:
            if head.size > rows:
                kind = ROLLED_BACK if head.number > last else TRUNCATED
                report.problems.append(Damage(
                    kind, rows, log.positions[-1] if rows else None, head.number,
                    f"an anchor holds seal {head.number} over {head.size} rows; the store has "
                    f"{rows} rows and seals up to {last}"))
            elif log.roots.get(head.size) == head.root and head.number in stored and \
                    stored[head.number].head != head:
                seal = stored[head.number]
                report.problems.append(Damage(BAD_SEAL, None, seal.position, head.number,
                                              f"seal {head.number} differs from its anchor"))
        within = [head for head in anchored if head.size <= rows]
        damage = anchor_damage(within, seals, log.digests, log.positions, log.roots)
        if damage is not None:
            report.problems.append(damage)

    def _check_tracked(self, log: Scan, report: VerifyReport) -> None:
        end = log.positions[-1] if len(log.positions) else 0
        beyond = {name: at for name, at in self.tracked.items() if at > end}
        if beyond:
            name, at = max(beyond.items(), key=lambda item: item[1])
            report.problems.append(Damage(
                TRUNCATED, len(log.positions), end or None, None,
                f"the log ends at position {end}, but {name!r} had read up to position {at}"))
