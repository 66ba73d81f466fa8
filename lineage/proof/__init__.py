"""Tamper evidence for the event log: a Merkle tree over every stored row, signed tree heads
(seals) and proofs that hold outside the database.

``verifier`` checks proofs with the standard library alone (for third parties); ``merkle``
builds trees and proofs; ``canonical`` turns stored rows into leaves. Nothing here imports
``cryptography``: signing and checking signatures is ``lineage.adapters.signing``'s.
"""
