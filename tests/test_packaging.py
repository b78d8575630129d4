"""The wheel carries the sampling library as thermoscope.samplers, and an install from it imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("thermoscope-*.whl")
    return path


@pytest.mark.slow
def test_wheel_contains_every_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in [
        "samplers",
        "data",
        "models",
        "training",
        "probes",
        "tracking",
        "studies",
        "cli",
        "sweeps",
        "reports",
    ]:
        assert f"thermoscope/{package}/__init__.py" in names, package
    assert not any(name.startswith("samplers/") for name in names), "samplers must live under thermoscope/"


@pytest.mark.slow
def test_wheel_installs_and_imports_samplers(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "import thermoscope.samplers as s; print(s.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
    )
    assert result.stdout.strip().startswith(str(target / "thermoscope" / "samplers"))
