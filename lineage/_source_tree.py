"""A source checkout imports ``adapters/`` and ``projections/`` as ``lineage.adapters`` and
``lineage.projections``, as the wheel installs them.

The two folders sit beside ``lineage/`` in the checkout; the build maps them inside the package
(``package-dir`` in pyproject.toml), and an editable install maps them with a finder of its own.
A ``python`` started in the checkout, though, imports ``lineage`` from ``./lineage/`` even when
the package is installed (the current directory comes first on ``sys.path``), and there the two
are not subpackages. So when this package lies in a checkout (``pyproject.toml``, ``adapters/``
and ``projections/`` beside it) a finder maps the same names to the same folders. Nothing is
imported until asked for, and an installed package (no checkout around it) is left alone.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

SUBPACKAGES = {"lineage.adapters": "adapters", "lineage.projections": "projections"}


class SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``lineage.adapters`` and ``lineage.projections`` in the checkout at ``root``; their
    own submodules are then found the usual way, through the package's ``__path__``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        folder = SUBPACKAGES.get(fullname)
        if folder is None:
            return None
        init = self.root / folder / "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)])


def map_checkout(package_dir: str) -> bool:
    """Install the finder when the package at ``package_dir`` lies in a checkout (once per
    process); returns whether it is in one."""
    root = Path(package_dir).resolve().parent
    if not (root / "pyproject.toml").is_file() or not all(
            (root / folder / "__init__.py").is_file() for folder in SUBPACKAGES.values()):
        return False
    if not any(isinstance(finder, SourceTreeFinder) for finder in sys.meta_path):
        sys.meta_path.append(SourceTreeFinder(root))
    return True
