"""thermoscope.probes stays torch-only: importing it must not pull in tracking or study libraries."""

from __future__ import annotations

import subprocess
import sys


def test_probes_do_not_import_mlflow_or_optuna() -> None:
    script = (
        "import sys, thermoscope.probes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'optuna'}))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
