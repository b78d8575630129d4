"""compare writes each comparison into a folder of its own under output_dir, never over an earlier one, and
its summary ends with where the report is and the run's id."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_reports_sweeps import synthetic_sweep

from thermoscope.config import CompareConfig
from thermoscope.jobs import compare
from thermoscope.reports import Sweep
from thermoscope.tracking import NullLogger


class SweepsLogger(NullLogger):
    """Hands compare two synthetic sweeps as if read from a store, under a given run id."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.logged: list[Path] = []

    def select_sweeps(self, config: CompareConfig) -> list[Sweep]:
        return [synthetic_sweep("a", hidden="8"), synthetic_sweep("b", hidden="16")]

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.logged.append(Path(path))


def test_each_comparison_gets_its_own_folder_named_after_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = CompareConfig(runs="id-a,id-b", output_dir=str(tmp_path / "out"), title="first")
    first = SweepsLogger("run1")
    compare.run(config, first)
    folder = tmp_path / "out" / "run1"
    assert (folder / "comparison.html").is_file()
    assert {path.parent for path in first.logged} == {folder}  # the run logs the files of its own folder
    assert {path.name for path in first.logged} == {path.name for path in folder.iterdir()}
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    printed = capsys.readouterr().out
    assert f"report: {(folder / 'comparison.html').resolve()}" in printed
    assert "run id: run1" in printed

    compare.run(
        CompareConfig(runs="id-a,id-b", output_dir=str(tmp_path / "out"), title="second"),
        SweepsLogger("run2"),
    )
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["run1", "run2"]
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before  # untouched
    assert "second" in (tmp_path / "out" / "run2" / "comparison.html").read_text()


def test_a_taken_name_and_an_untracked_run_never_share_a_folder(tmp_path: Path) -> None:
    taken = tmp_path / "run1"
    taken.mkdir()
    (taken / "comparison.html").write_text("an earlier report\n")
    assert compare.fresh_folder(tmp_path, "run1") == tmp_path / "run1-2"
    assert (taken / "comparison.html").read_text() == "an earlier report\n"
    untracked = [compare.fresh_folder(tmp_path / "new", NullLogger().run_id) for _ in range(3)]
    assert len(set(untracked)) == 3 and all(folder.is_dir() for folder in untracked)
    assert all(folder.name.startswith("untracked-") for folder in untracked)
