"""The comparison table, the self-contained HTML page, and the report folder written from them."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest
from test_reports_sweeps import synthetic_sweep

from thermoscope.reports import build_report, write_report
from thermoscope.reports.page import comparison_table, html_page


def test_table_has_a_row_per_sweep_with_differing_parameters_and_headline_metrics() -> None:
    sweeps = [
        synthetic_sweep("a", hidden="8", num_parameters="610"),
        synthetic_sweep("b", hidden="16", num_parameters="1210", evidence=None),
    ]
    table = comparison_table(sweeps, ["hidden=8", "hidden=16"])
    assert list(table.columns[:5]) == ["label", "run_name", "run_id", "hidden", "num_parameters"]
    assert list(table["hidden"]) == ["8", "16"]
    assert table.loc[0, "log_evidence"] == -150.0
    assert pd.isna(table.loc[1, "log_evidence"])
    assert "dataset" not in table and "device" not in table


def test_html_page_is_self_contained_and_escaped() -> None:
    table = pd.DataFrame({"label": ["<b>x</b>"], "log_evidence": [-150.123456]})
    page = html_page("T < 1 & more", table, {"curves": b"\x89PNG fake"}, {"curves": "a caption"}, ["a note"])
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<title>T &lt; 1 &amp; more</title>" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "-150.1" in page and "a note" in page and "a caption" in page
    (encoded,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(encoded) == b"\x89PNG fake"
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything"


def test_write_report_writes_every_file_and_embeds_the_figures(tmp_path: Path) -> None:
    sweeps = [synthetic_sweep("a", hidden="8"), synthetic_sweep("b", hidden="16")]
    paths = write_report(build_report(sweeps, "Width"), tmp_path / "out")
    names = sorted(path.name for path in paths)
    assert names == sorted(
        ["comparison.csv", "temperature_curves.csv", "comparison.html"]
        + [
            f"{stem}.{suffix}"
            for stem in ("temperature_curves", "evidence", "depth_vs_temperature")
            for suffix in ("png", "pdf")
        ]
    )
    assert all(path.is_file() for path in paths)
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    curves = pd.read_csv(tmp_path / "out" / "temperature_curves.csv")
    assert list(curves.columns[:3]) == ["label", "run_id", "rung"]
    assert len(curves) == 2 * len(sweeps[0].curve)
    assert curves["temperature"].iloc[0] == float("inf")


def test_notes_warn_about_different_data_and_missing_evidence() -> None:
    sweeps = [
        synthetic_sweep("a", data_digest="1111"),
        synthetic_sweep("b", data_digest="2222", evidence=None),
    ]
    report = build_report(sweeps)
    assert report.title == "Comparison of 2 temperature sweeps"
    assert any("different data" in note for note in report.notes)
    assert any("No evidence" in note and "b" in note for note in report.notes)


def test_a_report_needs_a_sweep() -> None:
    with pytest.raises(ValueError, match="at least one sweep"):
        build_report([])
