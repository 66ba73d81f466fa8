"""Adapters: technology-specific implementations of the ports in ``lineage.ports``.

Installed as ``lineage.adapters``. Adapters import ``lineage``; ``lineage``'s core never imports
them (only ``lineage.bootstrap`` and ``lineage.cli.main`` do).
"""
