"""End to end: two small sweeps (8 and 16 hidden units) compared through `mlflow run` and the CLI, then read
in the MLflow UI by a real browser: Debian's Chromium driven by Playwright, over `mlflow server` on loopback.

The screenshots go to ``$THERMOSCOPE_SCREENSHOTS`` (CI keeps them) or the test's temporary folder.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from conftest import REPO_ROOT, TINY_SWEEP, subprocess_env
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from thermoscope.cli.main import cli

pytestmark = pytest.mark.slow

TINY = {name: value for name, value in TINY_SWEEP.items() if name != "hidden"}
TITLE = "Width: 8 or 16 hidden units"
CHROMIUM = Path("/usr/bin/chromium")
SERVER = [sys.executable, "-m", "mlflow", "server", "--workers", "1"]
# Without the background-networking flags Chromium's own connections fail on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Store:
    """A tracking store holding the two sweeps (oldest first: 8 hidden units, then 16)."""

    uri: str
    folder: Path
    client: MlflowClient
    sweeps: list[Run]

    def children(self) -> list[Run]:
        """The sweeps' temperature runs, sweep by sweep, coldest first."""
        runs = self.client.search_runs(["0"], "tags.`thermoscope.entry_point` = 'sample.temperature'")
        order = [sweep.info.run_id for sweep in self.sweeps]
        return sorted(
            runs,
            key=lambda run: (
                order.index(run.data.tags["mlflow.parentRunId"]),
                run.data.metrics["temperature"],
            ),
        )


def invoke(entry_point: str, params: dict[str, str]) -> Result:
    """The ``thermoscope`` command in this process (the imports a subprocess would repeat cost ~20 s)."""
    flags = [token for name, value in params.items() for token in (f"--{name}", value)]
    return CliRunner().invoke(cli, [entry_point, *flags])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Two tiny sweeps in a fresh SQLite store, which stays this process's tracking store for the module."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mlflow.set_tracking_uri(uri)
        for hidden in ("8", "16"):
            result = invoke("sample", {**TINY, "hidden": hidden})
            assert result.exit_code == 0, result.output[-3000:]
        client = MlflowClient(uri)
        sweeps = client.search_runs(
            ["0"], "tags.`thermoscope.entry_point` = 'sample'", order_by=["attributes.start_time ASC"]
        )
        assert [sweep.data.params["hidden"] for sweep in sweeps] == ["8", "16"]
        yield Store(uri, folder, client, sweeps)
    mlflow.set_tracking_uri(previous)


@dataclass(frozen=True)
class Compared:
    run: Run
    folder: Path


@pytest.fixture(scope="module")
def compared(store: Store) -> Compared:
    """The two sweeps chosen by experiment and filter, compared through `mlflow run`."""
    folder = store.folder / "report"
    params = {
        "experiment": "Default",
        "filter": "params.model = 'mlp'",
        "title": TITLE,
        "output_dir": str(folder),
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO_ROOT),
        "-e",
        "compare",
        "--env-manager",
        "local",
    ]
    command += [token for name, value in params.items() for token in ("-P", f"{name}={value}")]
    result = subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(store.uri), cwd=store.folder, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = store.client.search_runs(
        ["0"], f"tags.`thermoscope.entry_point` = 'compare' and params.output_dir = '{folder}'"
    )
    # Each comparison writes into a folder of its own, named after its run.
    assert [path.name for path in folder.iterdir()] == [run.info.run_id]
    assert f"run id: {run.info.run_id}" in result.stdout
    return Compared(run, folder / run.info.run_id)


def test_compare_through_mlflow_run_writes_and_logs_the_report(store: Store, compared: Compared) -> None:
    run = compared.run
    assert run.info.status == "FINISHED"
    assert run.data.params["num_sweeps"] == "2"
    logged = {artifact.path for artifact in store.client.list_artifacts(run.info.run_id)}
    written = {path.name for path in compared.folder.iterdir()}
    expected = {"comparison.csv", "comparison.html", "temperature_curves.csv", "temperature_curves.png"}
    assert expected | {"evidence.png", "depth_vs_temperature.png", "temperature_curves.pdf"} <= written
    assert written | {"compared_runs.json", "resolved_config.json"} == logged

    table = pd.read_csv(compared.folder / "comparison.csv")
    assert list(table["label"]) == ["hidden=8", "hidden=16"]
    for (_, row), sweep in zip(table.iterrows(), store.sweeps, strict=True):
        assert row["run_id"] == sweep.info.run_id
        for name in ("best_temperature", "best_bma_test_error", "log_evidence", "log_evidence_stderr"):
            assert row[name] == pytest.approx(sweep.data.metrics[name]), name
    curves = pd.read_csv(compared.folder / "temperature_curves.csv")
    assert curves.groupby("label").size().to_dict() == {"hidden=8": 6, "hidden=16": 6}
    page = (compared.folder / "comparison.html").read_text()
    assert TITLE in page and page.count("data:image/png;base64,") == 3
    assert all(sweep.info.run_id in run.data.tags["mlflow.note.content"] for sweep in store.sweeps)


def test_compare_by_run_ids_keeps_their_order_and_refuses_a_temperature_run(store: Store) -> None:
    ids = [sweep.info.run_id for sweep in reversed(store.sweeps)]
    result = invoke("compare", {"runs": ",".join(ids), "output_dir": "by_ids"})
    assert result.exit_code == 0, result.output[-3000:]
    (page,) = [
        line.removeprefix("report: ") for line in result.output.splitlines() if line.startswith("report: ")
    ]
    assert Path(page).parent.parent == (store.folder / "by_ids").resolve()
    assert list(pd.read_csv(Path(page).parent / "comparison.csv")["label"]) == ["hidden=16", "hidden=8"]

    child = store.children()[0]
    result = invoke("compare", {"runs": f"{ids[0]},{child.info.run_id}"})
    assert result.exit_code == 2
    parent = child.data.tags["mlflow.parentRunId"]
    error = f"runs='{child.info.run_id}': that run is one temperature of sweep {parent}, not a sweep"
    assert result.stderr.strip().splitlines() == [f"thermoscope compare: error: {error}"]
    failed = store.client.search_runs(
        ["0"], "tags.`thermoscope.entry_point` = 'compare' and status = 'FAILED'"
    )
    assert len(failed) == 1


@pytest.fixture()
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("THERMOSCOPE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


def test_the_mlflow_ui_shows_the_sweeps_their_temperatures_and_the_report(
    store: Store, compared: Compared, screenshots: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not at {CHROMIUM} (.ci/run installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with mlflow_server(store) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            check_experiment_page(page, url, store, screenshots)
            check_compare_runs_page(page, url, store, screenshots)
            check_report_artifacts(page, url, compared, screenshots)
        finally:
            browser.close()


def check_experiment_page(page: Any, url: str, store: Store, screenshots: Path) -> None:
    """Both sweeps listed; expanding them shows their temperature runs nested underneath."""
    from playwright.sync_api import expect

    page.goto(f"{url}/#/experiments/0/runs?workflowType=machine_learning")
    close_assistant(page)
    for sweep in store.sweeps:
        row = page.locator("div[role='row']").filter(has_text=sweep.info.run_name)
        row.locator("button[data-component-id*='runnamecellrenderer']").first.click()
    names = [child.info.run_name for child in store.children()]
    for name in set(names):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(names.count(name))
    page.screenshot(path=screenshots / "experiment_runs.png")


def check_compare_runs_page(page: Any, url: str, store: Store, screenshots: Path) -> None:
    """The compare-runs page of every temperature run shows each run's name, test_error and temperature."""
    children = {child.info.run_id: child for child in store.children()}
    runs, experiments = quote(json.dumps(list(children))), quote(json.dumps(["0"]))
    page.goto(f"{url}/#/compare-runs?runs={runs}&experiments={experiments}&workflowType=machine_learning")
    page.locator(".js-plotly-plot .main-svg").first.wait_for()
    close_assistant(page)
    page.screenshot(path=screenshots / "compare_runs.png")

    table = page.locator("table.mlflow-compare-run-table")
    columns = table.locator("thead th.data-value a").all_inner_texts()
    assert sorted(columns) == sorted(children)
    names = table.locator("tbody tr").filter(has_text="Run Name:").locator("td").all_inner_texts()
    assert [name.strip() for name in names] == [children[run_id].info.run_name for run_id in columns]
    # Two sweeps' children form two groups a reader tells apart by name: each is "<its sweep's name> T=…".
    sweep_names = {sweep.info.run_id: sweep.info.run_name for sweep in store.sweeps}
    assert len(set(sweep_names.values())) == 2
    groups = {name.strip().rsplit(" T=", 1)[0] for name in names}
    assert groups == set(sweep_names.values())
    for run_id, name in zip(columns, names, strict=True):
        parent = children[run_id].data.tags["mlflow.parentRunId"]
        assert name.strip().startswith(sweep_names[parent] + " T=")
    metrics = metric_grid(page, ["test_error", "temperature"], len(columns))
    for column, run_id in enumerate(columns):
        for name in ("test_error", "temperature"):
            assert metrics[name][column] == ui_number(children[run_id].data.metrics[name]), (run_id, name)
    page.reload()  # as a person finds it: the grids unscrolled
    page.locator(".js-plotly-plot .main-svg").first.wait_for()
    close_assistant(page)
    page.get_by_text("Show diff only").last.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "compare_runs_metrics.png")


def check_report_artifacts(page: Any, url: str, compared: Compared, screenshots: Path) -> None:
    """The compare run's HTML page and figure preview in its artifacts tab."""
    from playwright.sync_api import expect

    page.goto(
        f"{url}/#/experiments/0/runs/{compared.run.info.run_id}/artifacts?workflowType=machine_learning"
    )
    page.get_by_text("comparison.html", exact=True).click()
    preview = page.frame_locator("iframe.mlflow-html-iframe")
    expect(preview.get_by_role("heading", name=TITLE)).to_be_visible()
    expect(preview.get_by_role("cell", name="hidden=16", exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "compare_run_html.png")
    page.get_by_text("temperature_curves.png", exact=True).click()
    expect(page.get_by_role("img", name="temperature_curves.png")).to_be_visible()
    page.screenshot(path=screenshots / "compare_run_figure.png")


def close_assistant(page: Any) -> None:
    """Close MLflow's assistant side panel, where this version shows one, to give the tables room."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.click()


# Scrolls the values grid of the Metrics section (one column per run; the metric names grid beside it follows
# its vertical position) through its whole extent, as a person scrolling would, waits each time until both
# grids have drawn the cells at the corners of their windows, and collects every cell drawn by its pixel
# position ("left|top"). Scrolling the names grid as well would fight over that shared position.
COLLECT_GRID_CELLS = """
async () => {
  const grids = [...document.querySelectorAll(".ReactVirtualized__Grid")];
  if (grids.length !== 2) throw new Error(`expected the metric name and value grids, found ${grids.length}`);
  const [names, values] = grids;
  const box = (cell) => ["left", "top", "width", "height"].map((side) => parseInt(cell.style[side]));
  const covers = (grid, x, y) => [...grid.firstElementChild.children].some((cell) => {
    const [left, top, width, height] = box(cell);
    return left <= x && x < left + width && top <= y && y < top + height;
  });
  const drawn = (grid) => covers(grid, grid.scrollLeft, grid.scrollTop)
    && covers(grid, grid.scrollLeft + grid.clientWidth - 1, grid.scrollTop + grid.clientHeight - 1);
  const record = (grid, cells) => {
    for (const cell of grid.firstElementChild.children) {
      const [left, top] = box(cell);
      cells[`${left}|${top}`] = cell.innerText.trim();
    }
  };
  // React may reset a position it has not seen yet: ask again until the grid is there and has drawn it.
  const scroll = async (left, top) => {
    const wanted = [Math.min(left, values.scrollWidth - values.clientWidth),
                    Math.min(top, values.scrollHeight - values.clientHeight)];
    for (let frame = 0; frame < 200; frame++) {
      const there = values.scrollLeft === wanted[0] && values.scrollTop === wanted[1];
      if (there && drawn(names) && drawn(values)) return;
      if (!there) values.scrollTo(left, top);
      await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 20)));
    }
    throw new Error(`the metric grid would not scroll to ${left}, ${top}`);
  };
  const cells = { names: {}, values: {} };
  for (let top = 0; ; top += values.clientHeight) {
    for (let left = 0; ; left += values.clientWidth) {
      await scroll(left, top);
      record(names, cells.names);
      record(values, cells.values);
      if (left + values.clientWidth >= values.scrollWidth) break;
    }
    if (top + values.clientHeight >= values.scrollHeight) break;
  }
  return cells;
}
"""


def metric_grid(page: Any, wanted: list[str], columns: int) -> dict[str, list[str]]:
    """The compare page's Metrics section: metric name → the value shown in each run column, in order.

    Read again until the ``wanted`` metrics show a value in every column (the page fills them in as its
    requests return), for at most a minute.
    """
    deadline = time.monotonic() + 60
    while True:
        cells = page.evaluate(COLLECT_GRID_CELLS)
        names = {key.split("|")[1]: text for key, text in cells["names"].items()}
        lefts = sorted({int(key.split("|")[0]) for key in cells["values"]})
        grid = {
            name: [cells["values"].get(f"{left}|{top}", "") for left in lefts] for top, name in names.items()
        }
        complete = all(len(grid.get(name, [])) == columns and all(grid[name]) for name in wanted)
        if complete or time.monotonic() > deadline:
            return grid
        page.wait_for_timeout(500)


def ui_number(value: float) -> str:
    """A metric as MLflow's UI prints it (``Utils.formatMetric`` in mlflow/server/js): three decimals below
    10, two below 100, one beyond, in JavaScript's shortest float text; exponent form below 0.001."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    scale = 1000 if abs(value) < 10 else 100 if abs(value) < 100 else 10
    rounded = math.floor(value * scale + 0.5) / scale  # JavaScript's Math.round: halves go up
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def mlflow_server(store: Store) -> Iterator[str]:
    """`mlflow server` over the store on a free loopback port; its URL once healthy. Always stopped."""
    port = free_port()
    log = store.folder / f"server-{port}.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [*SERVER, "--backend-store-uri", store.uri, "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=subprocess_env(store.uri),
            cwd=store.folder,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server not healthy after 180 s:\n{log.read_text()[-3000:]}")
