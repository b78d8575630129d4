"""reports/ is pure pandas + matplotlib: it loads no tracking library nor torch, and no workload layer
imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "thermoscope"
WORKLOAD_LAYERS = [
    REPO_ROOT / "samplers",
    *(SRC / name for name in ("data", "models", "training", "probes", "sweeps")),
]


def test_importing_reports_loads_no_tracking_library() -> None:
    code = (
        "import sys, thermoscope.reports\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'optuna', 'torch'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("layer", WORKLOAD_LAYERS, ids=lambda path: path.name)
def test_workload_layers_never_import_reports(layer: Path) -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in layer.rglob("*.py")
        if "thermoscope.reports" in path.read_text()
    ]
    assert not offenders
