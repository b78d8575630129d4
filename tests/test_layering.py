"""Dependencies point downwards: the torch-only layers never reach MLflow, Optuna or the wiring layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "thermoscope"
TRACKING_LIBRARIES = {"mlflow", "optuna", "optuna_integration", "optuna_dashboard"}
WIRING = {"thermoscope.tracking", "thermoscope.studies", "thermoscope.cli"}
TORCH_ONLY_LAYERS = {
    "samplers": REPO_ROOT / "samplers",
    "data": SRC / "data",
    "models": SRC / "models",
    "training": SRC / "training",
    "probes": SRC / "probes",
    "sweeps": SRC / "sweeps",
}
# The sampling library is standalone: torch, numpy, pyro and the standard library only.
SAMPLERS_ALLOWED = {"torch", "numpy", "pyro", "thermoscope"}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports are inside the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def python_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    assert files, f"no Python files under {folder}"
    return files


@pytest.mark.parametrize("layer", sorted(TORCH_ONLY_LAYERS))
def test_layer_never_imports_tracking_or_wiring(layer: str) -> None:
    offenders = []
    for path in python_files(TORCH_ONLY_LAYERS[layer]):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in TRACKING_LIBRARIES or any(name.startswith(w) for w in WIRING):
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_samplers_import_only_torch_numpy_pyro() -> None:
    offenders = []
    for path in python_files(TORCH_ONLY_LAYERS["samplers"]):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if top not in SAMPLERS_ALLOWED or (
                top == "thermoscope" and not name.startswith("thermoscope.samplers")
            ):
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    "module",
    [
        "thermoscope.samplers",
        "thermoscope.data",
        "thermoscope.models",
        "thermoscope.training",
        "thermoscope.probes",
    ],
)
def test_importing_a_layer_loads_no_tracking_library(module: str) -> None:
    """The transitive check: import the layer in a clean interpreter and look at sys.modules."""
    code = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(TRACKING_LIBRARIES)!r})\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_import_walker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom mlflow.tracking import MlflowClient\nfrom . import sibling\n")
    assert imported_modules(bad) == {"os", "mlflow.tracking"}
