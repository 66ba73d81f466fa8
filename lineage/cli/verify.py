"""``lineage seal`` and ``lineage verify``: tamper evidence for the event log (issue 14).

    lineage seal [--key FILE] [--anchor FILE]... [--stdout] [--otlp] [--follow [--poll S]]
                 [--every-events N] [--every-s S] [--json]
    lineage seal --new-key FILE
    lineage verify [--public-key KEY] [--anchor FILE]... [--json]
    lineage verify --event ID | --from SEAL --to SEAL   (a proof, JSON)
    lineage verify --artifacts [--json]

``verify`` exits 0 when the log checks out, 1 when damage was found (the first bad position
first) or a proof cannot be given.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from lineage.api import Tracker
from lineage.bootstrap import open_store
from lineage.bootstrap_proof import anchors_from, open_sealer, open_verifier
from lineage.cli.base import Invocation, Seconds, command, json_option, print_json, print_json_line
from lineage.config import Settings
from lineage.errors import ValidationError


def register(root: click.Group) -> None:
    root.add_command(_seal)
    root.add_command(_verify)


def _database(cli: Invocation) -> str:
    return str(cli.db) if cli.db else Settings.load().database_url


@command("seal", "seal the event log: signed Merkle tree heads, kept as events",
         "Without --follow: seal everything stored so far, then stop. With --follow: seal "
         "whenever --every-events rows wait or --every-s seconds passed (Ctrl-C to stop). "
         "Each seal is also appended to every --anchor file, and printed as a JSON line "
         "with --stdout.")
@click.option("--key", metavar="FILE", help="Ed25519 private key, PEM (default: LINEAGE_SEAL_KEY)")
@click.option("--new-key", metavar="FILE", help="write a new private key to FILE (mode 0600), "
                                                "print its public key, and stop")
@click.option("--anchor", "anchors", metavar="FILE", multiple=True,
              help="append each seal to FILE (repeatable; also LINEAGE_SEAL_ANCHOR)")
@click.option("--stdout", "to_stdout", is_flag=True, help="print each seal as a JSON line")
@click.option("--otlp", is_flag=True, help="send each seal as a 'seal log' span to the OTLP "
              "collector (OTEL_EXPORTER_OTLP_* settings)")
@click.option("--follow", is_flag=True, help="keep sealing as events arrive")
@click.option("--poll", type=Seconds(), default=1.0, show_default=True,
              help="with --follow: seconds between checks")
@click.option("--every-events", type=click.IntRange(min=1),
              help="seal when N rows wait (default: LINEAGE_SEAL_EVERY_EVENTS, else 10000)")
@click.option("--every-s", type=Seconds(), help="seal when S seconds passed since the last "
                                                "seal (default: LINEAGE_SEAL_EVERY_S, else 60)")
@json_option
def _seal(cli: Invocation, key: str | None, new_key: str | None, anchors: tuple[str, ...],
          to_stdout: bool, otlp: bool, follow: bool, poll: float, every_events: int | None,
          every_s: float | None) -> int:
    if new_key:
        from lineage.adapters.signing import generate_key

        public = generate_key(new_key).hex()
        if cli.json:
            print_json({"key": new_key, "public_key": public})
        else:
            cli.console.print(f"wrote {new_key}; public key (give it to verifiers):\n{public}",
                              highlight=False)
        return 0
    for name, value in (("--every-s", every_s), ("--poll", poll)):
        if value is not None and not value > 0:
            raise ValidationError(name, f"must be more than 0 seconds, got {value}", value)
    from lineage.adapters.anchors import FileAnchor, StreamAnchor

    published: list[Any] = [FileAnchor(path) for path in anchors]
    if to_stdout:
        published.append(StreamAnchor(sys.stdout))
    if otlp:
        published.append(_otlp_anchor())
    store = open_store(_database(cli), create=False)
    try:
        sealer = open_sealer(store, key=key, anchors=published, every_events=every_events,
                             every_s=every_s)
        if follow:
            return _follow(sealer, poll)
        head = sealer.seal()
    finally:
        store.close()
    summary = {"sealed": sealer.sealed, "number": head.number if head else None,
               "size": head.size if head else None, "root": head.root.hex() if head else None}
    if cli.json:
        print_json(summary)
    elif not to_stdout:
        cli.console.print(f"seal {head.number}: {head.size} rows, root {head.root.hex()}"
                          if head else "nothing new to seal", highlight=False)
    return 0


def _otlp_anchor() -> Any:
    from lineage.adapters.anchors import OtlpAnchor
    from lineage.adapters.otlp.encoder import OtlpEncoder
    from lineage.bootstrap import otlp_transport
    from lineage.config.otlp import OtlpSettings

    settings = OtlpSettings.load()
    return OtlpAnchor(OtlpEncoder(settings.service_name), otlp_transport(settings))


def _follow(sealer: Any, poll: float) -> int:
    stop = threading.Event()
    try:
        while not stop.wait(poll):
            sealer.seal_if_due()
    except KeyboardInterrupt:
        return 0
    return 0


@command("verify", "check the event log against its seals; print proofs",
         "Recomputes the Merkle tree of every stored row and checks each seal's root and "
         "signature, the --anchor files and the followers' positions. Exit code 1 when "
         "anything is wrong: the first bad position comes first, with the kind of damage.")
@click.option("--public-key", "public_keys", metavar="KEY", multiple=True,
              help="a trusted public key: 64 hex digits or a key file; repeat it for the "
                   "keys before and after a rotation (default: LINEAGE_SEAL_PUBLIC_KEY; else "
                   "the key the seals name)")
@click.option("--anchor", "anchors", metavar="FILE", multiple=True,
              help="seals kept outside the database (lineage seal --anchor); repeatable")
@click.option("--event", metavar="ID", help="print the inclusion proof of an event (an event "
                                            "id, or a log position @N)")
@click.option("--from", "first", type=click.IntRange(min=1), metavar="SEAL",
              help="with --to: print the consistency proof between two seal numbers")
@click.option("--to", "second", type=click.IntRange(min=1), metavar="SEAL")
@click.option("--artifacts", is_flag=True, help="re-hash local artifact files against their "
              "checksums and record the outcomes as events")
@json_option
def _verify(cli: Invocation, public_keys: tuple[str, ...], anchors: tuple[str, ...], event: str | None,
            first: int | None, second: int | None, artifacts: bool) -> int:
    if (first is None) != (second is None):
        raise ValidationError("--from" if first is None else "--to",
                              "--from and --to go together (two seal numbers)")
    if artifacts:
        return _artifacts(cli)
    store = open_store(_database(cli), create=False)
    try:
        verifier = open_verifier(store, public_key=list(public_keys) or None)
        if event is not None or first is not None:
            from lineage.application import proofs

            print_json(proofs.inclusion(verifier, event) if event is not None
                       else proofs.consistency(verifier, first or 0, second or 0))
            return 0
        report = verifier.verify(anchors_from(anchors))
    finally:
        store.close()
    if cli.json:
        print_json(report.to_dict())
    else:
        _print_report(cli, report)
    return 0 if report.ok else 1


def _print_report(cli: Invocation, report: Any) -> None:
    trust = "trusted key" if report.key_trusted else "the key the seals name (not trusted: " \
                                                     "pass --public-key)"
    cli.console.print(f"{report.rows} rows, {report.seals} seals, {report.sealed} rows sealed, "
                      f"{report.unsealed} not yet; signatures checked with {trust}",
                      highlight=False)
    if report.ok:
        cli.console.print("ok: every seal matches the log", highlight=False)
    for problem in report.problems:
        where = "" if problem.position is None else f" at position {problem.position}"
        row = "" if problem.leaf is None else f" (row {problem.leaf})"
        cli.console.print(f"DAMAGE {problem.kind}{where}{row}: {problem.detail}", highlight=False)


def _artifacts(cli: Invocation) -> int:
    with Tracker(_database(cli), create=False, export_otlp=False) as tracker:
        checks = tracker.verify_artifacts()
    for check in checks:
        if cli.json:
            print_json_line(check.to_dict())
        else:
            cli.console.print(f"{check.outcome:9} {check.artifact_id[:12]} {check.uri}: "
                              f"{check.detail}", highlight=False)
    return 0 if all(check.outcome == "verified" for check in checks) else 1
