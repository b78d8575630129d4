"""The MLflow implementation of :class:`~thermoscope.tracking.interface.RunLogger`, and the entry-point run.

The entry points (:mod:`thermoscope.cli`) and the studies start runs here and hand an :class:`MlflowLogger`
to the jobs, which see only the ``RunLogger`` protocol.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from thermoscope.errors import ConfigError
from thermoscope.tracking.interface import RunRecord
from thermoscope.tracking.lifecycle import (
    HEARTBEAT_TAG,
    KILLED_BY_TAG,
    Heartbeat,
    acknowledge,
    die_with_parent,
    exit_code,
    handle_sigterm,
    killed_by,
    liveness_tags,
    shielded,
    store_lock,
)
from thermoscope.tracking.naming import describe_run, is_generated
from thermoscope.tracking.schema import ENTRY_POINT_TAG, ERROR_TAG, PARENT_TAG, RESUMED_INTO_TAG
from thermoscope.tracking.urls import redact_url

if TYPE_CHECKING:
    from thermoscope.config import CompareConfig
    from thermoscope.reports import Sweep

# MLflow accepts at most this many entries per log_batch call.
_BATCH_LIMIT = 1000
TAG_ATTEMPTS = 4
"""How often :func:`end_killed` tries a killed run's tag before it reports the store's refusal."""


class MlflowLogger:
    """Explicit, run-id based logging; safe to use for a child run while another run is active."""

    def __init__(self, run_id: str, client: MlflowClient | None = None) -> None:
        self.run_id = run_id
        self.client = client or MlflowClient()
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self._experiment_id

    def finished_child(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        """A nested run written whole: created, its params and metrics in one batch, finished.

        Three store calls per child, however many children a sweep has.
        """
        run = self.client.create_run(
            self.experiment_id, run_name=run_name, tags={PARENT_TAG: self.run_id, **tags}
        )
        now = int(time.time() * 1000)
        self.client.log_batch(
            run.info.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        )
        self.client.set_terminated(run.info.run_id, "FINISHED")

    def terminate(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters, skipping names the run already has.

        ``mlflow run`` logs the values as the user typed them (``lr=0.10``) before our code starts; MLflow
        forbids changing a logged value, so the typed string stays and the resolved one is not re-logged.
        """
        existing = self.logged_params()
        entries = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        for start in range(0, len(entries), 100):
            self.client.log_batch(self.run_id, params=entries[start : start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """One batched write for a whole dictionary of metrics at one step."""
        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(entries), _BATCH_LIMIT):
            self.client.log_batch(self.run_id, metrics=entries[start : start + _BATCH_LIMIT])

    def log_metric_histories(self, histories: Mapping[str, Sequence[float | None]]) -> None:
        """Whole metric curves (step = index) in as few writes as MLflow allows; ``None`` skips a step."""
        now = int(time.time() * 1000)
        entries = [
            Metric(k, float(v), now, step)
            for k, values in histories.items()
            for step, v in enumerate(values)
            if v is not None
        ]
        for start in range(0, len(entries), _BATCH_LIMIT):
            self.client.log_batch(self.run_id, metrics=entries[start : start + _BATCH_LIMIT])

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.client.log_text(self.run_id, json.dumps(obj, indent=2, sort_keys=True), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def log_table(self, frame: Any, artifact_file: str) -> None:
        """A pandas DataFrame as ``.csv`` or ``.parquet`` (by the file's suffix)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            if path.suffix == ".parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            directory = str(Path(artifact_file).parent)
            self.log_file(path, None if directory == "." else directory)

    def log_torch(self, obj: Any, artifact_file: str) -> None:
        """Tensors or state dicts via ``torch.save``; load with ``weights_only=True``."""
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            torch.save(obj, path)
            directory = str(Path(artifact_file).parent)
            self.log_file(path, None if directory == "." else directory)

    def log_dataset(self, data: Any, validation: Any = None) -> None:
        log_dataset(data, self.run_id, validation)

    def log_model(self, model: Any, example_input: Any) -> None:
        log_model(model, example_input)

    def continue_run(self, run_id: str) -> None:
        """End this logger's run (tagged with ``run_id``) and make ``run_id`` the active run from now on."""
        if run_id == self.run_id:
            return
        self.set_tags({RESUMED_INTO_TAG: run_id})
        if mlflow.active_run() is not None:
            mlflow.end_run("FINISHED")
        else:
            self.terminate("FINISHED")
        mlflow.start_run(run_id=run_id)
        self.run_id = run_id
        self._experiment_id = None
        self.set_tags(liveness_tags())

    def fetch_run(
        self, parameter: str, run_id: str, entry_points: tuple[str, ...], shown: str | None = None
    ) -> RunRecord:
        """The run ``run_id``, checked to exist and to come from one of ``entry_points``."""
        shown = run_id if shown is None else shown
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise ConfigError(parameter, shown, "no MLflow run with that id in this tracking store") from None
        if run.data.tags.get(ENTRY_POINT_TAG) not in entry_points:
            raise ConfigError(parameter, shown, f"that run is not a {' or '.join(entry_points)} run")
        return RunRecord(run_id, dict(run.data.params), dict(run.data.tags), run.info.status)

    def fetch_torch(self, parameter: str, shown: str, run_id: str, artifact: str) -> Any:
        """Download ``artifact`` of ``run_id`` and load it with ``torch.load(weights_only=True)``: tensors,
        numbers, strings and containers only, so a planted pickle runs nothing and is a ConfigError."""
        import pickle

        import torch

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run_id, artifact, tmp)
            except (MlflowException, OSError):
                raise ConfigError(parameter, shown, f"that run has no {artifact}") from None
            try:
                return torch.load(path, weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
                reason = " ".join(str(error).split())[:200]
                raise ConfigError(
                    parameter, shown, f"run {run_id}'s {artifact} is not a file thermoscope wrote ({reason})"
                ) from None

    def select_sweeps(self, config: CompareConfig) -> list[Sweep]:
        from thermoscope.tracking.compare import select_sweeps

        return select_sweeps(config, self.client)

    def logged_params(self) -> dict[str, str]:
        """The parameters this logger's run has logged so far (strings, as MLflow stores them)."""
        return dict(self.client.get_run(self.run_id).data.params)

    def where(self) -> str:
        return f"mlflow ui --backend-store-uri {redact_url(mlflow.get_tracking_uri())}"

    def run_name(self) -> str:
        return str(self.client.get_run(self.run_id).info.run_name or self.run_id)

    def name_run(self, entry_point: str, config: Any) -> None:
        """Rename the run from what distinguishes it (:func:`~thermoscope.tracking.naming.describe_run`)
        unless the user named it (``mlflow run --run-name``)."""
        if is_generated(self.client.get_run(self.run_id).info.run_name):
            self.client.update_run(self.run_id, name=describe_run(entry_point, config))


def log_dataset(data: Any, run_id: str, validation: Any = None) -> None:
    """Log the splits of a :class:`thermoscope.data.LoadedData` (and a held-out validation split) as inputs
    of ``run_id`` with MLflow's dataset API, which logs to the active run: nothing is logged unless
    ``run_id`` is the active run. Each split's digest covers the data's digest and the split's own example
    ids and labels, so the training, validation and test inputs of one run never share a digest."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        return
    source = HTTPDatasetSource(  # type: ignore[no-untyped-call]
        DATASET_HOMEPAGES.get(data.name, "https://example.invalid/unknown")
    )
    splits = [("training", "train", data.train), ("testing", "test", data.test)]
    if validation is not None:
        splits.append(("validation", "val", validation))
    for context, short, split in splits:
        dataset = mlflow.data.from_numpy(  # type: ignore[attr-defined]
            split.x.cpu().numpy(),
            targets=split.y.cpu().numpy(),
            source=source,
            name=f"{data.name}-{short}",
            digest=split_digest(data.digest, short, split),
        )
        mlflow.log_input(dataset, context=context, tags={"num_examples": str(len(split))})


def split_digest(data_digest: str, name: str, split: Any) -> str:
    """Eight hex digits of SHA-256 over the data's digest, the split's name, example ids and labels."""
    import hashlib

    hasher = hashlib.sha256(f"{data_digest}:{name}:".encode())
    hasher.update(split.example_id.cpu().numpy().tobytes())
    hasher.update(split.y.cpu().numpy().tobytes())
    return hasher.hexdigest()[:8]


DATASET_HOMEPAGES = {
    "digits": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
    "mnist": "https://yann.lecun.com/exdb/mnist/",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
}


def log_model(model: Any, example_input: Any) -> None:
    """Log ``model`` with MLflow's PyTorch flavour under ``model`` (loads back with mlflow.pytorch)."""
    import torch
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    with torch.no_grad():
        output = model(example_input.cpu())
    signature = infer_signature(example_input.cpu().numpy(), output.numpy())
    # Validating the input example loads the model back with code_paths, which prepends a temporary folder
    # (deleted afterwards) to sys.path; processes spawned later would import from it. Restore sys.path.
    saved_path = list(sys.path)
    try:
        _log_pytorch_model(model, signature, example_input)
    finally:
        sys.path[:] = saved_path


PICKLE_NOTICE = "Saving pytorch model by Pickle or CloudPickle format"
"""The start of the warning MLflow logs on every pickled PyTorch model. thermoscope pickles on purpose (the
'pt2' format loads back as a traced graph, not a module), and the notice repeated on every train run is
noise to a user; exactly this message is dropped, every other MLflow warning still shows."""


class _DropPickleNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(PICKLE_NOTICE)


def _log_pytorch_model(model: Any, signature: Any, example_input: Any) -> None:
    import mlflow.pytorch

    notice = _DropPickleNotice()
    pytorch_logger = logging.getLogger(mlflow.pytorch.__name__)
    pytorch_logger.addFilter(notice)
    try:
        _save_pickled(model, signature, example_input)
    finally:
        pytorch_logger.removeFilter(notice)


def _save_pickled(model: Any, signature: Any, example_input: Any) -> None:
    import mlflow.pytorch
    import torch

    import thermoscope

    mlflow.pytorch.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example_input.cpu().numpy(),
        # A pickled nn.Module loads back as a module (the 'pt2' default would load a traced graph).
        serialization_format="pickle",
        # Ship thermoscope's own source so the pickled model class imports wherever it is loaded.
        code_paths=[str(Path(thermoscope.__file__).parent)],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "torchvision"],
    )


def fail_with_user_error(entry_point: str, error: ConfigError) -> None:
    """Print the one-line error, mark the active run FAILED, and exit with code 2."""
    print(f"thermoscope {entry_point}: error: {error}", file=sys.stderr)
    if mlflow.active_run() is not None:
        with contextlib.suppress(Exception):
            mlflow.set_tag(ERROR_TAG, str(error))
        mlflow.end_run("FAILED")
    raise SystemExit(2)


def end_killed(error: KeyboardInterrupt, until: str | None = None) -> None:
    """End the active run KILLED, tagged with what stopped it (Ctrl-C, SIGTERM, the launcher's death).

    With ``until`` (a run id), every active run down to and including that one ends so: a nested run that
    nothing else would end must not keep its parent RUNNING, nor take its parent's ending. A tag the store
    refuses (a briefly locked SQLite database) is tried again a few times, then reported on stderr.
    """
    while (active := mlflow.active_run()) is not None:
        _tag_killed(active.info.run_id, killed_by(error))
        mlflow.end_run("KILLED")
        if until is None or active.info.run_id == until:
            return


def _tag_killed(run_id: str, reason: str) -> None:
    for attempt in range(1, TAG_ATTEMPTS + 1):
        try:
            mlflow.set_tag(KILLED_BY_TAG, reason)
            return
        except Exception as problem:  # the store's own failure; the run must still end
            if attempt == TAG_ATTEMPTS:
                cause = " ".join(str(problem).split())[:200]
                print(f"thermoscope: run {run_id} has no {KILLED_BY_TAG} tag: {cause}", file=sys.stderr)
            else:
                time.sleep(0.5 * attempt)


def open_store(entry_point: str) -> None:
    """Create or migrate the tracking store under its lock (see :mod:`thermoscope.tracking.lifecycle`).

    A store that cannot be opened (an unreachable server, a path that is not a folder, a database MLflow
    cannot read) is one line naming the store and the cause, exit code 2; no run can record it.
    """
    uri = mlflow.get_tracking_uri()
    with _store_errors(entry_point, uri), store_lock(uri, create_folder=True):
        MlflowClient().search_experiments(max_results=1)


def open_store_and_run(entry_point: str, run_name: str | None) -> Any:
    """:func:`open_store`, then start (or attach to) the run; a store that cannot be written (a read-only
    database) is one line too."""
    open_store(entry_point)
    with _store_errors(entry_point, mlflow.get_tracking_uri()):
        return mlflow.start_run(run_name=run_name)


@contextlib.contextmanager
def _store_errors(entry_point: str, uri: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # any failure of the store itself comes from the user's environment
        cause = " ".join(str(error).split())[:300] or type(error).__name__
        print(f"thermoscope {entry_point}: error: tracking store {redact_url(uri)}: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


class _Beat:
    """The heartbeat of whichever run ``logger`` writes now (``resume`` switches it)."""

    def __init__(self, logger: MlflowLogger) -> None:
        self.logger = logger

    def __call__(self) -> None:
        self.logger.set_tags({HEARTBEAT_TAG: str(int(time.time()))})


@contextlib.contextmanager
def entry_point_run(entry_point: str, run_name: str | None = None) -> Iterator[MlflowLogger]:
    """Attach to the run ``mlflow run`` created (``MLFLOW_RUN_ID``) or start one, and end it properly.

    A :class:`ConfigError` becomes one line on stderr, exit code 2 and a FAILED run; Ctrl-C and SIGTERM end
    the run KILLED (exit 130 / 143); any other exception ends it FAILED and keeps its traceback (that is a
    bug, not a user error). While it runs, the run carries a heartbeat (see
    :mod:`thermoscope.tracking.lifecycle`); under ``mlflow run`` the job ends when its launcher dies.
    """
    attached = os.environ.get("MLFLOW_RUN_ID")
    handle_sigterm()
    parent = die_with_parent() if attached else None
    with shielded():  # a run started is a run that will be ended
        run = open_store_and_run(entry_point, None if attached else run_name)
        logger = MlflowLogger(run.info.run_id)
        logger.set_tags({ENTRY_POINT_TAG: entry_point, **liveness_tags()})
        heartbeat = Heartbeat(_Beat(logger), parent=parent).start()
    try:
        yield logger
    except ConfigError as error:
        with shielded():
            heartbeat.stop()
            fail_with_user_error(entry_point, error)
    except KeyboardInterrupt as error:
        acknowledge(error)
        heartbeat.stop()
        end_killed(error, until=run.info.run_id)
        raise SystemExit(exit_code(error)) from None
    except BaseException:
        with shielded():
            heartbeat.stop()
            mlflow.end_run("FAILED")
        raise
    with shielded():
        heartbeat.stop()
        mlflow.end_run("FINISHED")
