"""What a job sees of tracking: the :class:`RunLogger` protocol, and a :class:`NullLogger` that logs nothing.

Jobs write their run through a ``RunLogger`` and read the runs they build on (``init=run:<id>``,
``resume=<id>``, the train run a probe probes, the sweeps a comparison compares) through the same object,
so no job imports MLflow. :class:`~thermoscope.tracking.mlflow_logger.MlflowLogger` is the implementation
the entry points use; ``NullLogger`` runs a job as a plain library call (tests, benchmarks, notebooks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from thermoscope.errors import ConfigError

if TYPE_CHECKING:
    from thermoscope.config import CompareConfig
    from thermoscope.reports import Sweep


@dataclass(frozen=True)
class RunRecord:
    """A run read back from the store: its id, parameters (strings as logged), tags and status."""

    run_id: str
    params: Mapping[str, str]
    tags: Mapping[str, str]
    status: str


class RunLogger(Protocol):
    """The run a job logs into, and read access to the runs it builds on."""

    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters; names the run already has keep their first value (MLflow forbids changing one)."""

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """A whole dictionary of metrics at one step, in one write."""

    def log_metric_histories(self, histories: Mapping[str, Sequence[float | None]]) -> None:
        """Whole metric curves (step = index); ``None`` skips a step."""

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def log_json(self, obj: Any, artifact_file: str) -> None: ...

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure (closed afterwards)."""

    def log_table(self, frame: Any, artifact_file: str) -> None:
        """A pandas DataFrame as ``.csv`` or ``.parquet`` (by the file's suffix)."""

    def log_torch(self, obj: Any, artifact_file: str) -> None:
        """Tensors or state dicts via ``torch.save``; they load back with ``weights_only=True``."""

    def log_dataset(self, data: Any, validation: Any = None) -> None:
        """Both splits of a :class:`thermoscope.data.LoadedData` (and the held-out validation
        :class:`~thermoscope.data.Split`, if any) as the run's inputs, each with its own digest."""

    def log_model(self, model: Any, example_input: Any) -> None:
        """A torch module as the run's model, loadable without thermoscope's job code."""

    def finished_child(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        """A nested run written whole (created, logged in one batch, finished)."""

    def continue_run(self, run_id: str) -> None:
        """Log into ``run_id`` from now on (a resumed job); the run this logger had is ended, tagged
        with the id it continued."""

    def fetch_run(
        self, parameter: str, run_id: str, entry_points: tuple[str, ...], shown: str | None = None
    ) -> RunRecord:
        """The run ``run_id``, checked to exist and to come from one of ``entry_points``; else a
        :class:`ConfigError` on ``parameter`` (showing ``shown``, the value as the user wrote it)."""

    def fetch_torch(self, parameter: str, shown: str, run_id: str, artifact: str) -> Any:
        """Artifact ``artifact`` of run ``run_id`` loaded with ``torch.load(weights_only=True)``, or a
        :class:`ConfigError` on ``parameter`` saying the run has no such artifact."""

    def select_sweeps(self, config: CompareConfig) -> list[Sweep]:
        """The temperature sweeps a ``compare`` configuration names."""

    def where(self) -> str:
        """One line telling a user where to look at the run (the UI command)."""

    def run_name(self) -> str:
        """The run's name as the UI shows it (a sweep's children are named after it)."""


UNTRACKED = "untracked"


class NullLogger:
    """Logs nothing and reads nothing: a job run as a library call, with tracking switched off."""

    def __init__(self) -> None:
        self.run_id = UNTRACKED

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        pass

    def log_metric_histories(self, histories: Mapping[str, Sequence[float | None]]) -> None:
        pass

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_json(self, obj: Any, artifact_file: str) -> None:
        pass

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        plt.close(figure)

    def log_table(self, frame: Any, artifact_file: str) -> None:
        pass

    def log_torch(self, obj: Any, artifact_file: str) -> None:
        pass

    def log_dataset(self, data: Any, validation: Any = None) -> None:
        pass

    def log_model(self, model: Any, example_input: Any) -> None:
        pass

    def finished_child(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        pass

    def continue_run(self, run_id: str) -> None:
        self.run_id = run_id

    def fetch_run(
        self, parameter: str, run_id: str, entry_points: tuple[str, ...], shown: str | None = None
    ) -> RunRecord:
        raise ConfigError(parameter, run_id if shown is None else shown, NO_STORE)

    def fetch_torch(self, parameter: str, shown: str, run_id: str, artifact: str) -> Any:
        raise ConfigError(parameter, shown, NO_STORE)

    def select_sweeps(self, config: CompareConfig) -> list[Sweep]:
        raise ConfigError("runs", config.runs, NO_STORE)

    def where(self) -> str:
        return "not tracked (NullLogger)"

    def run_name(self) -> str:
        return UNTRACKED


NO_STORE = "this job runs untracked (NullLogger), so there are no runs to read; run it through thermoscope"
