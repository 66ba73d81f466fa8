"""Tinker integration (the ``lineage[tinker]`` extra)."""
