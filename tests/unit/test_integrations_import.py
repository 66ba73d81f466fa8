"""``import lineage`` imports no framework: the integrations are optional extras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_lineage_imports_no_framework() -> None:
    code = ("import sys, lineage, lineage.integrations, lineage.integrations.resources; "
            "print(sorted(m for m in ('torch', 'transformers', 'lightning', 'safetensors', "
            "'peft', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
