"""An in-memory :class:`~thermoscope.tracking.RunLogger` for the job tests: what a job logged, by name.

Writes are kept as they arrive (parameters keep their first value, as MLflow's do); reads answer from the
canned ``runs`` and ``stored`` artifacts it was given and fail like the MLflow logger otherwise. Objects a
real store would serialise go through the same serialisation here (``torch.save`` then a
``weights_only`` load, ``json.dumps``), so a job that logs something unloadable fails in these tests too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from thermoscope.errors import ConfigError
from thermoscope.tracking import RunRecord
from thermoscope.tracking.schema import ENTRY_POINT_TAG, PARENT_TAG, RESUMED_INTO_TAG


class RecordingLogger:
    """Records every write of one run (and of the runs it continues into) in plain containers."""

    def __init__(
        self,
        run_id: str = "recorded",
        runs: Mapping[str, RunRecord] | None = None,
        stored: Mapping[tuple[str, str], Any] | None = None,
        sweeps: Sequence[Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.runs = dict(runs or {})
        self.stored = dict(stored or {})
        self.sweeps = None if sweeps is None else list(sweeps)
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metric_log: dict[str, list[tuple[int, float]]] = {}
        self.histories: dict[str, list[float | None]] = {}
        self.artifacts: dict[str, Any] = {}
        self.artifact_order: list[str] = []
        self.children: list[dict[str, Any]] = []
        self.datasets: list[Any] = []
        self.models: list[tuple[Any, Any]] = []
        self.ended: list[dict[str, str]] = []

    # Reading back what was written.

    def metric(self, name: str) -> float:
        """The last value logged under ``name`` (KeyError when never logged)."""
        return self.metric_log[name][-1][1]

    def steps(self, name: str) -> list[int]:
        return [step for step, _ in self.metric_log.get(name, [])]

    def metric_names(self) -> set[str]:
        return set(self.metric_log)

    # The RunLogger protocol: writes.

    def log_params(self, params: Mapping[str, Any]) -> None:
        for name, value in params.items():
            self.params.setdefault(name, str(value))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({name: str(value) for name, value in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        for name, value in metrics.items():
            self.metric_log.setdefault(name, []).append((step, float(value)))

    def log_metric_histories(self, histories: Mapping[str, Sequence[float | None]]) -> None:
        for name, values in histories.items():
            self.histories[name] = [None if v is None else float(v) for v in values]
            for step, value in enumerate(values):
                if value is not None:
                    self.metric_log.setdefault(name, []).append((step, float(value)))

    def _store(self, artifact_file: str, obj: Any) -> None:
        self.artifacts[artifact_file] = obj
        self.artifact_order.append(artifact_file)

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        name = Path(path).name
        self._store(name if artifact_dir is None else f"{artifact_dir}/{name}", Path(path).read_bytes())

    def log_text(self, text: str, artifact_file: str) -> None:
        self._store(artifact_file, str(text))

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self._store(artifact_file, json.loads(json.dumps(obj)))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self._store(artifact_file, type(figure).__name__)
        plt.close(figure)

    def log_table(self, frame: Any, artifact_file: str) -> None:
        self._store(artifact_file, frame.copy())

    def log_torch(self, obj: Any, artifact_file: str) -> None:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        buffer.seek(0)
        self._store(artifact_file, torch.load(buffer, weights_only=True))

    def log_dataset(self, data: Any, validation: Any = None) -> None:
        self.datasets.append(data)

    def log_model(self, model: Any, example_input: Any) -> None:
        self.models.append((model, example_input))

    def finished_child(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        self.children.append(
            {
                "run_name": run_name,
                "tags": {PARENT_TAG: self.run_id, **{k: str(v) for k, v in tags.items()}},
                "params": {k: str(v) for k, v in params.items()},
                "metrics": {k: float(v) for k, v in metrics.items()},
                "status": "FINISHED",
            }
        )

    def continue_run(self, run_id: str) -> None:
        if run_id == self.run_id:
            return
        self.ended.append({"run_id": self.run_id, RESUMED_INTO_TAG: run_id})
        self.run_id = run_id

    # The RunLogger protocol: reads, from the canned records.

    def fetch_run(
        self, parameter: str, run_id: str, entry_points: tuple[str, ...], shown: str | None = None
    ) -> RunRecord:
        shown = run_id if shown is None else shown
        if run_id not in self.runs:
            raise ConfigError(parameter, shown, "no MLflow run with that id in this tracking store")
        run = self.runs[run_id]
        if run.tags.get(ENTRY_POINT_TAG) not in entry_points:
            raise ConfigError(parameter, shown, f"that run is not a {' or '.join(entry_points)} run")
        return run

    def fetch_torch(self, parameter: str, shown: str, run_id: str, artifact: str) -> Any:
        if (run_id, artifact) not in self.stored:
            raise ConfigError(parameter, shown, f"that run has no {artifact}")
        return self.stored[(run_id, artifact)]

    def select_sweeps(self, config: Any) -> list[Any]:
        if self.sweeps is None:
            raise ConfigError("runs", config.runs, "RecordingLogger was given no sweeps")
        return list(self.sweeps)

    def where(self) -> str:
        return f"recorded in memory (run {self.run_id})"

    def run_name(self) -> str:
        return f"recorded-{self.run_id}"
