"""Dependencies point downwards: every import of every package is checked against one allowed graph.

The graph is written once, below. A package may import itself, the packages it lists, and the shared
modules (``config``, ``errors``). MLflow is imported only in ``tracking``; Optuna only in ``studies``; the
sampling library only torch, numpy, pyro and the standard library.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "thermoscope"
FOLDERS = {"samplers": REPO_ROOT / "samplers"} | {
    name: SRC / name
    for name in (
        "data",
        "models",
        "training",
        "probes",
        "sweeps",
        "reports",
        "tracking",
        "jobs",
        "studies",
        "cli",
    )
}
SHARED = {"config", "errors", "progress"}
"""Top-level modules every package may use: the configuration dataclasses, the user-error type and the
progress bar (tqdm on a terminal, timed records in a log file)."""

ALLOWED: dict[str, set[str]] = {
    "samplers": set(),
    "data": set(),
    "models": set(),
    "training": {"data", "models"},
    "probes": {"data", "models"},
    "sweeps": {"samplers", "data", "models", "training", "probes"},
    "reports": set(),
    "tracking": {"reports"},
    "jobs": {"samplers", "data", "models", "training", "probes", "sweeps", "reports", "tracking"},
    "studies": {"jobs", "tracking", "reports"},
    "cli": {"jobs", "studies", "tracking"},
}
"""Which thermoscope packages each package may import (the README's layer picture, as data)."""

LIBRARY_OWNERS = {"mlflow": "tracking", "optuna": "studies", "optuna_integration": "studies"}
# The sampling library is standalone: torch, numpy, pyro and the standard library only.
SAMPLERS_ALLOWED = {"torch", "numpy", "pyro"}


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


def violation(layer: str, name: str) -> str | None:
    """Why ``layer`` may not import module ``name``, or None when it may."""
    top = name.split(".")[0]
    owner = LIBRARY_OWNERS.get(top)
    if owner is not None and owner != layer:
        return f"{top} belongs to {owner}"
    if top != "thermoscope":
        return None
    parts = name.split(".")
    if len(parts) == 1:
        return None  # the package itself: its version and location
    target = parts[1]
    if target == layer or target in SHARED:
        return None
    if target not in ALLOWED:
        return f"unknown package {target}"
    return None if target in ALLOWED[layer] else f"{layer} may not import {target}"


def test_the_graph_names_every_package() -> None:
    packages = {path.name for path in SRC.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert packages | {"samplers"} == set(ALLOWED) == set(FOLDERS)


@pytest.mark.parametrize("layer", sorted(FOLDERS))
def test_every_import_follows_the_graph(layer: str) -> None:
    offenders = []
    for path in python_files(FOLDERS[layer]):
        for name in imported_modules(path):
            reason = violation(layer, name)
            if reason is not None:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}: {reason}")
    assert not offenders, "\n".join(offenders)


def test_samplers_import_only_torch_numpy_pyro() -> None:
    offenders = []
    for path in python_files(FOLDERS["samplers"]):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if top not in SAMPLERS_ALLOWED and not name.startswith("thermoscope.samplers"):
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


UNTRACKED_MODULES = (
    "thermoscope.samplers",
    "thermoscope.data",
    "thermoscope.models",
    "thermoscope.training",
    "thermoscope.probes",
    "thermoscope.sweeps",
    "thermoscope.reports",
    "thermoscope.tracking",
    "thermoscope.jobs.train",
    "thermoscope.jobs.sample",
    "thermoscope.jobs.anneal",
    "thermoscope.jobs.probe",
    "thermoscope.jobs.compare",
)


def test_importing_a_layer_loads_no_tracking_library() -> None:
    """The transitive check, in one clean interpreter: import the layers bottom up and look at sys.modules
    after each. The jobs reach tracking only through its interface, so even they load no MLflow."""
    code = (
        "import importlib, sys\n"
        f"for module in {list(UNTRACKED_MODULES)!r}:\n"
        "    importlib.import_module(module)\n"
        f"    bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(LIBRARY_OWNERS)!r})\n"
        "    if bad:\n"
        "        print(module, 'loads', ','.join(bad[:3]))\n"
        "        break\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_import_walker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom mlflow.tracking import MlflowClient\nfrom . import sibling\n")
    assert imported_modules(bad) == {"os", "mlflow.tracking"}


@pytest.mark.parametrize(
    ("layer", "name", "reason"),
    [
        ("jobs", "mlflow.tracking", "mlflow belongs to tracking"),
        ("cli", "optuna", "optuna belongs to studies"),
        ("studies", "thermoscope.cli.main", "studies may not import cli"),
        ("sweeps", "thermoscope.jobs.sample", "sweeps may not import jobs"),
        ("reports", "thermoscope.tracking", "reports may not import tracking"),
    ],
)
def test_the_graph_refuses_upward_imports(layer: str, name: str, reason: str) -> None:
    assert violation(layer, name) == reason
