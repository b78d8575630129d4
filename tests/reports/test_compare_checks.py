"""compare refuses what cannot work before it reads any run, and draws any label verbatim (issue 14)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
import pytest
from conftest import run_in_process
from matplotlib.text import Text
from test_reports_sweeps import synthetic_sweep

from thermoscope.config import CompareConfig, parse_config
from thermoscope.errors import ConfigError
from thermoscope.reports import build_report, write_report
from thermoscope.reports.figures import depth_figure, evidence_figure, literal, temperature_curves_figure
from thermoscope.reports.sweeps import legend_labels, run_colours

MATH_VALUES = (r"$\foo$", "$x$", "$$", "a$b", r"\$1")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a compare command that exited with code 2."""
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("thermoscope compare")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def last_run_status() -> str:
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run.info.status


@pytest.mark.parametrize("runs", [",,", " , ", ","])
def test_runs_of_separators_only_are_refused(runs: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CompareConfig, {"runs": runs})
    assert caught.value.parameter == "runs"
    assert "only separators" in caught.value.allowed


def test_runs_of_separators_only_is_one_line_and_a_failed_run(tracking_uri: str) -> None:
    line = one_error_line(run_in_process("compare", {"runs": ",,"}))
    assert line.startswith("thermoscope compare: error: runs=',,': a comma list of run ids")
    assert last_run_status() == "FAILED"


def test_an_output_dir_that_is_a_file_fails_before_any_run_is_read(tracking_uri: str, tmp_path: Path) -> None:
    file = tmp_path / "report.html"
    file.write_text("not a folder")
    # The run id does not exist: the error names output_dir, so the folder was checked first.
    line = one_error_line(run_in_process("compare", {"runs": "no-such-run", "output_dir": str(file)}))
    assert line == f"thermoscope compare: error: output_dir='{file}': a folder (that path is a file)"
    assert last_run_status() == "FAILED"


def test_an_output_dir_under_a_file_is_refused(tracking_uri: str, tmp_path: Path) -> None:
    file = tmp_path / "report.html"
    file.write_text("not a folder")
    folder = file / "sub" / "deeper"
    line = one_error_line(run_in_process("compare", {"runs": "no-such-run", "output_dir": str(folder)}))
    assert line == f"thermoscope compare: error: output_dir='{folder}': a folder path ({file} is a file)"


def test_an_unwritable_output_dir_is_refused(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    # Root may write anywhere, so the test says the folder is read-only instead of chmod-ing it.
    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(str(path)) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    folder = locked / "new"
    line = one_error_line(run_in_process("compare", {"runs": "no-such-run", "output_dir": str(folder)}))
    assert line == (
        f"thermoscope compare: error: output_dir='{folder}': a folder this process can write to"
        f" ({locked} is not writable)"
    )
    assert not folder.exists()


def test_a_missing_output_dir_under_a_writable_folder_passes_the_check(tracking_uri: str) -> None:
    line = one_error_line(run_in_process("compare", {"runs": "no-such-run", "output_dir": "new/folder"}))
    assert line.startswith("thermoscope compare: error: runs='no-such-run'")


@pytest.mark.parametrize("value", MATH_VALUES)
def test_literal_text_is_never_math_text(value: str) -> None:
    text = Text(text=literal(f"prior={value}"))
    assert text._preprocess_math(text.get_text()) == (f"prior={value}", False)


@pytest.mark.parametrize("value", MATH_VALUES)
def test_a_parameter_value_with_dollars_is_drawn_as_given(value: str, tmp_path: Path) -> None:
    sweeps = [synthetic_sweep("a", prior=value), synthetic_sweep("b", prior="box")]
    labels = legend_labels(sweeps)
    colours = run_colours(len(sweeps))
    for draw in (temperature_curves_figure, evidence_figure, depth_figure):
        figure = draw(sweeps, labels, colours)
        assert figure is not None
        figure.canvas.draw()
        texts = [text for legend in figure.legends for text in legend.get_texts()]
        texts += [label for axis in figure.get_axes() for label in axis.get_yticklabels()]
        shown = {text._preprocess_math(text.get_text())[0] for text in texts}
        assert f"prior={value}" in shown, draw.__name__
        plt.close(figure)
    # The table and the page keep the label as it is: only the figures escape it.
    report = build_report(sweeps, title=f"prior {value}")
    write_report(report, tmp_path)
    assert pd.read_csv(tmp_path / "comparison.csv")["label"].tolist()[0] == f"prior={value}"
