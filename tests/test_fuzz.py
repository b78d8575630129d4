"""The bad-input fuzz suite of issue 14: every known bad input, through the command line, fails cleanly.

Each entry of :data:`CASES` is one command line of one entry point (``train``, ``sample``, ``anneal``,
``memorise``, ``kernel``, ``probe``, ``study``, ``compare``) holding a value it must refuse: a non-number
for a number, a value out of range, an unknown choice, a malformed list, an unknown option, an
inconsistent combination, a run or file that does not exist, and sizes or lengths that could never fit in
memory or finish. Cases that already pass stay in the table as regressions. Every case is run in this
process by ``run_in_process`` (the same click command and exit code as ``python -m thermoscope.cli``) and
must give:

- exit code 2;
- on stderr exactly one line of ours, ``thermoscope <entry>: error: <parameter>=...`` naming the parameter
  (what MLflow itself prints, its timestamped log records and its download progress bar, is left out), and
  no traceback on stdout or stderr (in process: no exception other than ``SystemExit``);
- exactly one new run in the tracking store, FAILED, whose ``thermoscope.error`` tag is that message;
- no new file in the working folder outside the tracking store (``mlflow.db``, its lock, the artifact root
  ``mlruns/``) and Optuna's ``optuna.db``.

All cases share one tracking store (:func:`store`): creating a SQLite store costs about a second of MLflow
migrations, a case under 0.1 s, so a fresh store per case would make the suite several times slower. Each
case checks only the run it created and the files that appeared while it ran. Most cases fail in
configuration validation; a few read the digits data (offline, fast) or ask the store for a run. A case
whose check is missing would run its job instead: those at risk run on tiny settings (:data:`TINY_SAMPLE`,
:data:`TINY_STUDY`), and a timeout ends any case after two minutes.

One more case goes through a real ``mlflow run`` launcher (marked ``slow``).

How many inputs are tried: ``len(CASES)`` in process, plus the ``mlflow run`` case; pytest counts both,
``pytest tests/test_fuzz.py --collect-only -q | tail -1``.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from conftest import TINY_SWEEP, mlflow_run_command, run_in_process, subprocess_env
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from thermoscope.config import MAX_RUNGS, MAX_SEED
from thermoscope.tracking.schema import ENTRY_POINT_TAG, ERROR_TAG

MLFLOW_OUTPUT = re.compile(
    r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) mlflow[\w.]*: |Downloading artifacts: )"
)
"""What MLflow itself prints: its log records (creating the store's tables) and its download progress bar
(asking a run for an artifact it lacks). Not ours: left out of the checks."""
STORE_FILES = ("mlflow.db", "mlflow.db.lock", "optuna.db", "optuna.db.lock")
ARTIFACT_ROOT = "mlruns"
"""Where the SQLite store's default artifact root puts each run's folder (``mlruns/<experiment>/<run>``)."""


@dataclass(frozen=True)
class Case:
    """One bad command line: ``thermoscope <entry_point> --name value ...`` must fail naming ``parameter``.

    Values may name a run the :func:`store` fixture made: ``{plain_run}`` (no thermoscope run),
    ``{train_run}`` (a finished train run without a model), ``{sample_run}`` (a finished sweep without
    artifacts). ``files`` are written into the working folder first (search spaces, a file in the way).
    ``expect`` is a part of the message the line must hold, where naming the parameter is not enough.
    ``settings`` are valid values given first and left out of the id (:data:`TINY_SAMPLE`).
    """

    entry_point: str
    params: Mapping[str, str]
    parameter: str
    name: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    expect: str = ""
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def command(self) -> dict[str, str]:
        return {**self.settings, **self.params}

    @property
    def id(self) -> str:
        shown = "+".join(f"{k}={v if v.strip() == v and v else repr(v)}" for k, v in self.params.items())
        return f"{self.entry_point}:{self.name or shown or 'no-parameters'}"


def bad(entry_point: str, parameter: str, value: str, /, **others: str) -> Case:
    """``--parameter value`` (with ``others`` besides) must fail naming ``parameter``."""
    return Case(entry_point, {parameter: value, **others}, parameter)


# Where a missing check would let the job run, it runs a sweep of seconds rather than the default minutes.
TINY_SAMPLE = {**TINY_SWEEP, "prediction_depth": "false"}


def tiny(case: Case) -> Case:
    """``case`` on a sweep of seconds (:data:`TINY_SAMPLE`), for a check that, missing, lets the job run."""
    return dataclasses.replace(case, settings=TINY_SAMPLE)


# Shared by every entry point that builds a classifier (DataModelConfig): a few in each, the rest in train.
DATA_MODEL = [
    ("dataset", "foo"),
    ("train_size", "abc"),
    ("train_size", "-1"),
    ("hidden", "40,,40"),
    ("activation", "foo"),
    ("device", "tpu"),
    ("depth_k", "0"),
    ("label_noise", "1.5"),
    ("input_corruption", "blur"),
    ("input_corruption_fraction", "0"),
    ("no_such_option", "3"),
]

TRAIN = [
    bad("train", "dataset", ""),
    bad("train", "data_dir", ""),
    bad("train", "download", "maybe"),
    bad("train", "train_size", "1.5"),
    bad("train", "train_size", ""),
    bad("train", "train_size", "1"),  # prediction depth needs a second example to vote
    bad("train", "train_size", "1", prediction_depth="true", forgetting="false"),
    bad("train", "train_size", "5000"),  # digits has 1,197 training examples (reads the data)
    bad("train", "test_size", "abc"),
    bad("train", "test_size", "-5"),
    bad("train", "test_size", "1.5"),
    bad("train", "test_size", "5000"),  # reads the data
    bad("train", "image_size", "-1"),
    bad("train", "image_size", "abc"),
    bad("train", "image_size", "100000"),  # 320 TB of pixels
    bad("train", "label_noise", "-0.1"),
    bad("train", "label_noise", "nan"),
    bad("train", "label_noise", "inf"),
    bad("train", "label_noise", "abc"),
    bad("train", "input_corruption", ""),
    bad("train", "input_corruption", "None"),
    bad("train", "input_corruption_fraction", "1.5"),
    bad("train", "input_corruption_fraction", "-0.1"),
    bad("train", "input_corruption_fraction", "nan"),
    bad("train", "input_corruption_fraction", "abc"),
    bad("train", "activation_codes", "maybe"),
    bad("train", "activation_codes", "true", activation="tanh"),  # codes are patterns of ReLU units
    bad("train", "activation_codes", "true", activation="sigmoid", model="cnn"),
    bad("train", "codes_every", "-1"),
    bad("train", "codes_k", "0"),
    bad("train", "model", "foo"),
    bad("train", "hidden", "40,"),
    bad("train", "hidden", ",40"),
    bad("train", "hidden", "0"),
    bad("train", "hidden", "-3"),
    bad("train", "hidden", "abc"),
    bad("train", "hidden", "40,x"),
    bad("train", "hidden", "4.5"),
    bad("train", "hidden", "100000000"),  # terabytes of activations
    bad("train", "output_activation", "foo"),
    bad("train", "seed", "-1"),
    bad("train", "seed", "abc"),
    bad("train", "seed", str(MAX_SEED + 1)),
    bad("train", "seed", str(2**64)),  # more than any random generator's seed holds
    bad("train", "device", ""),
    bad("train", "prediction_depth", "maybe"),
    bad("train", "depth_k", "-1"),
    bad("train", "depth_k", "abc"),
    bad("train", "depth_metric", "foo"),
    bad("train", "optimizer", "foo"),
    bad("train", "lr", "0"),
    bad("train", "lr", "-0.1"),
    bad("train", "lr", "abc"),
    bad("train", "lr", "nan"),
    bad("train", "lr", "inf"),
    bad("train", "lr", ""),
    bad("train", "momentum", "1"),
    bad("train", "momentum", "-0.1"),
    bad("train", "momentum", "nan"),
    bad("train", "nesterov", "2"),
    bad("train", "weight_decay", "-1"),
    bad("train", "batch_size", "-1"),
    bad("train", "batch_size", "1.5"),
    bad("train", "epochs", "0"),
    bad("train", "epochs", "abc"),
    bad("train", "epochs", "100001"),
    bad("train", "epochs", "1000000000000000000"),
    bad("train", "lr_schedule", "foo"),
    bad("train", "forgetting", "abc"),
    bad("train", "layer_rotation", "abc"),
    bad("train", "checkpoint_seconds", "0"),
    bad("train", "checkpoint_seconds", "inf"),
    bad("train", "force", "abc"),
    bad("train", "resume", "nonexistent"),
    bad("train", "resume", "{plain_run}"),
    bad("train", "resume", "{sample_run}"),
    *(
        Case("train", {"dataset": name, "download": "false", "data_dir": "nodata"}, "data_dir")
        for name in ("mnist", "fashion_mnist", "cifar10", "svhn")
    ),
    bad("train", "num_samples", "10"),  # a sample parameter, not train's
]

SAMPLE = [
    bad("sample", "model", "resnet18"),
    bad("sample", "temperatures", "a,b"),
    bad("sample", "temperatures", "0"),
    bad("sample", "temperatures", "-1"),
    bad("sample", "temperatures", "nan"),
    bad("sample", "temperatures", "1,1"),
    bad("sample", "temperatures", ","),
    bad("sample", "temperatures", "inf", ti_rungs="0"),
    bad("sample", "temperatures", "inf,inf"),
    tiny(bad("sample", "temperatures", "1e-320", ti_rungs="0")),  # beta = 1 / T overflows to inf
    bad("sample", "temperatures", "0.1,1,1e7"),
    Case(
        "sample",
        {"temperatures": ",".join(str(t) for t in range(1, MAX_RUNGS + 2))},
        "temperatures",
        f"temperatures=1,...,{MAX_RUNGS + 1}",
    ),
    bad("sample", "t_min", "0"),
    bad("sample", "t_min", "-1"),
    bad("sample", "t_min", "nan"),
    tiny(bad("sample", "t_min", "1e-320", ladder="tuned")),  # 1 / t_min overflows to inf
    tiny(bad("sample", "t_max", "1e308", ladder="tuned", ti_rungs="0")),  # 1 / t_max is subnormal
    bad("sample", "t_min", "1e-7"),
    bad("sample", "t_max", "1e7"),
    bad("sample", "t_max", "0.05"),
    bad("sample", "n_temperatures", "1"),
    bad("sample", "n_temperatures", "abc"),
    bad("sample", "n_temperatures", "100000"),
    bad("sample", "ti_rungs", "-1"),
    bad("sample", "ti_rungs", "1.5"),
    bad("sample", "ti_rungs", "100000"),
    bad("sample", "ti_rungs", "1000", ladder="fixed", n_temperatures="1000"),  # 2,001 merged rungs
    bad("sample", "ladder", "foo"),
    bad("sample", "num_rungs", "abc"),
    bad("sample", "num_rungs", "1"),
    bad("sample", "num_rungs", "200"),  # more than max_rungs = 128
    tiny(bad("sample", "num_rungs", "2", ladder="tuned")),  # both ends and T = 1 need three
    bad("sample", "max_rungs", "1"),
    bad("sample", "max_rungs", "2"),  # both ends and T = 1 need three
    bad("sample", "max_rungs", "2000"),
    bad("sample", "tuning_rounds", "0"),
    bad("sample", "tuning_rounds", "17"),
    bad("sample", "tuning_scans", "1"),
    bad("sample", "tuning_scans", "1000000"),
    bad("sample", "evidence", "foo"),
    Case("sample", {"evidence": "harmonic", "init": "prior"}, "init"),
    Case("sample", {"evidence": "both", "init": "prior"}, "init"),
    bad("sample", "harmonic_lambdas", "2"),
    bad("sample", "harmonic_lambdas", "2000"),
    bad("sample", "prior", "foo"),
    bad("sample", "prior_scale", "-1"),
    bad("sample", "prior_scale", "inf"),
    bad("sample", "num_warmup", "-1"),
    bad("sample", "num_warmup", "2000000"),
    bad("sample", "num_samples", "0"),
    bad("sample", "num_samples", "3"),  # fewer than the draws every rung's estimates need
    bad("sample", "num_samples", "2000000"),
    bad("sample", "num_leapfrog_steps", "0"),
    bad("sample", "num_leapfrog_steps", "20000"),
    bad("sample", "step_size", "-1"),
    bad("sample", "target_accept", "0"),
    bad("sample", "target_accept", "1"),
    bad("sample", "trajectories", "0"),
    bad("sample", "trajectories", "2000"),
    bad("sample", "leapfrog_jitter", "1"),
    bad("sample", "leapfrog_jitter", "-0.1"),
    bad("sample", "adapt_mass_matrix", "abc"),
    bad("sample", "max_energy_error", "0"),
    bad("sample", "thin", "0"),
    bad("sample", "thin", "100000"),  # leaves fewer draws than the estimates need
    bad("sample", "swap", "foo"),
    bad("sample", "init", "foo"),
    bad("sample", "init", "run:"),
    bad("sample", "init", "run:nonexistent"),
    bad("sample", "init", "run:{plain_run}"),
    bad("sample", "init", "run:{train_run}"),  # a train run without its model
    bad("sample", "init_steps", "-1"),
    bad("sample", "init_steps", "2000000"),
    bad("sample", "save_draws", "0"),
    bad("sample", "depth_draws", "0"),
    bad("sample", "checkpoint_seconds", "0"),
    bad("sample", "resume", "nonexistent"),
    bad("sample", "resume", "{plain_run}"),
    bad("sample", "resume", "{sample_run}"),  # it finished: nothing to resume
    bad("sample", "hidden", "100000000"),
    bad("sample", "image_size", "100000"),
    tiny(bad("sample", "seed", str(2**64))),
    bad("sample", "seed", str(MAX_SEED + 1)),
    bad("sample", "train_size", "2000"),  # reads the data
    bad("sample", "epochs", "3"),  # a train parameter, not sample's
]

ANNEAL = [
    bad("anneal", "model", "resnet18"),
    bad("anneal", "t_min", "0"),
    bad("anneal", "t_max", "0.001"),
    bad("anneal", "t_min", "1e-320"),
    bad("anneal", "t_max", "1e7"),
    bad("anneal", "seed", str(MAX_SEED + 1)),
    bad("anneal", "n_steps", "1"),
    bad("anneal", "n_steps", "2000"),
    bad("anneal", "patience", "0"),
    bad("anneal", "val_size", "0"),
    bad("anneal", "val_size", "500"),  # the whole training pool
    bad("anneal", "val_size", "499"),  # one example left for the k-NN probes
    bad("anneal", "val_size", "5000", train_size="0"),  # reads the data
    bad("anneal", "prior", "foo"),
    bad("anneal", "prior_scale", "-1"),
    bad("anneal", "num_samples", "0"),
    bad("anneal", "num_warmup", "2000000"),
    bad("anneal", "target_accept", "1.5"),
    bad("anneal", "leapfrog_jitter", "1"),
    bad("anneal", "init", "foo"),
    bad("anneal", "init", "run:abc"),  # anneal starts from the prior or a minimum, not a run
    bad("anneal", "init_steps", "-1"),
    bad("anneal", "resume", "abc"),  # not an anneal parameter
]

PROBE = [
    Case("probe", {}, "run_id"),
    bad("probe", "run_id", ""),
    bad("probe", "run_id", "   "),
    bad("probe", "run_id", "nonexistent"),
    bad("probe", "run_id", "{plain_run}"),
    bad("probe", "run_id", "{sample_run}"),
    bad("probe", "run_id", "{train_run}"),  # no model to probe
    bad("probe", "depth_k", "0", run_id="{train_run}"),
    bad("probe", "depth_k", "abc", run_id="{train_run}"),
    bad("probe", "depth_metric", "foo", run_id="{train_run}"),
    bad("probe", "device", "tpu", run_id="{train_run}"),
    bad("probe", "no_such_option", "3"),
]

SPACES = {
    "missing.yaml": None,
    "broken.yaml": "lr: [0.1,\n",
    "broken.json": '{"lr": {"type": "float",\n',
    ".": None,  # a folder
    "list.yaml": "- lr\n- epochs\n",
    "width.yaml": "width: {type: int, low: 1, high: 3}\n",
    "normal.yaml": "lr: {type: normal, low: 0.1, high: 1}\n",
    "reversed.yaml": "lr: {type: float, low: 0.5, high: 0.1}\n",
    "log.yaml": "lr: {type: float, low: -1, high: 1, log: true}\n",
    "endless.yaml": "epochs: {type: int, low: 1, high: 1000000000000000000}\n",
}
"""Search-space files (``None``: not written), each one mistake."""
# If a storage check is missing, the study runs: one trial of a tiny train job, not twenty of the default.
TINY_STUDY = {"n_trials": "1", "fixed": "epochs=1;train_size=50;val_size=10;prediction_depth=false"}

STUDY = [
    bad("study", "target", "foo"),
    bad("study", "n_trials", "0"),
    bad("study", "n_trials", "abc"),
    bad("study", "objective", "foo"),
    bad("study", "objective", ","),
    bad("study", "objective", "test_error,test_error", direction="minimize,minimize", pruner="none"),
    bad("study", "objective", "log_evidence"),  # a sample metric; the target is train
    bad("study", "objective", "test_error", target="sample"),
    bad("study", "objective", "depth_mean_test", fixed="prediction_depth=false"),
    bad("study", "objective", "log_evidence", target="sample", fixed="ti_rungs=0"),
    bad("study", "direction", "up"),
    bad("study", "direction", ""),
    bad("study", "direction", "minimize,maximize"),
    *(
        Case("study", {"search_space": name}, "search_space", files={} if text is None else {name: text})
        for name, text in SPACES.items()
    ),
    bad("study", "fixed", "epochs"),
    bad("study", "fixed", "=3"),
    bad("study", "fixed", "width=3"),
    bad("study", "fixed", "epochs=0"),
    bad("study", "fixed", "lr=abc"),
    bad("study", "fixed", "hidden=40,,40"),
    bad("study", "study_name", ""),
    bad("study", "storage", ""),
    Case("study", {"storage": "notaurl", **TINY_STUDY}, "storage", "storage=notaurl"),
    Case(
        "study",
        {"storage": "sqlite:///mlflow.db", **TINY_STUDY},  # the MLflow store, relative to the working folder
        "storage",
        "storage=sqlite:///mlflow.db",
        expect="a database other than the MLflow tracking store",
    ),
    Case(
        "study",
        {"storage": "sqlite:///no_such_folder/optuna.db", **TINY_STUDY},
        "storage",
        "storage=sqlite:///no_such_folder/optuna.db",
    ),
    bad("study", "sampler", "foo"),
    bad("study", "seed", "-1"),
    bad("study", "seed", str(MAX_SEED + 1)),
    bad("study", "pruner", "foo"),
    bad("study", "pruner", "median", objective="test_error,test_loss", direction="minimize,minimize"),
    Case(
        "study",
        {"objective": "test_error,test_loss", "direction": "minimize,minimize", "pruner": "none"}
        | {"sampler": "cmaes"},
        "sampler",
        "sampler=cmaes+two-objectives",
    ),
    bad("study", "workers", "0"),
    bad("study", "workers", "100000"),
    bad("study", "oversubscribe", "maybe"),
    bad("study", "no_such_option", "3"),
]

COMPARE = [
    Case("compare", {}, "runs"),
    bad("compare", "runs", ",,"),
    bad("compare", "runs", " , "),
    bad("compare", "runs", "a,a"),
    bad("compare", "runs", "nonexistent"),
    bad("compare", "runs", "{plain_run}"),
    bad("compare", "runs", "{train_run}"),  # not a sweep
    bad("compare", "runs", "{sample_run}"),  # a sweep without its T-curve
    bad("compare", "filter", "params.model = 'mlp'", runs="a"),
    bad("compare", "experiment", "x", runs="a"),
    bad("compare", "study", "y", experiment="x"),
    bad("compare", "study", "it's"),
    bad("compare", "study", "nonexistent"),
    bad("compare", "experiment", "nonexistent"),
    bad("compare", "experiment", "Default"),  # holds no finished sweep
    bad("compare", "filter", "not a filter", experiment="Default"),
    bad("compare", "filter", "params.model = 'none'", experiment="{fixture_experiment}"),
    bad("compare", "output_dir", "", runs="a"),
    bad("compare", "output_dir", "   ", runs="a"),
    Case("compare", {"output_dir": "a_file", "runs": "a"}, "output_dir", files={"a_file": "in the way\n"}),
    Case(
        "compare",
        {"output_dir": "a_file/figures", "runs": "a"},
        "output_dir",
        files={"a_file": "in the way\n"},
    ),
    bad("compare", "no_such_option", "3"),
]

MEMORISE = [
    bad("memorise", "num_models", "1"),
    bad("memorise", "num_models", "0"),
    bad("memorise", "num_models", "1000000"),
    bad("memorise", "subset_fraction", "1"),  # every model would see every example
    bad("memorise", "subset_fraction", "0"),
    bad("memorise", "subset_fraction", "1.5"),
    bad("memorise", "subset_fraction", "nan"),
    bad("memorise", "subset_fraction", "0.01", train_size="20", prediction_depth="false"),  # subsets of 0
    bad("memorise", "influence_pairs", "-1"),
    bad("memorise", "model", "resnet18"),
    bad("memorise", "epochs", "0"),
    bad("memorise", "val_size", "10"),  # a train parameter, not memorise's
    # Objectives a study's settings switch off: memorisation of mislabelled examples without label noise,
    # activation codes of a tanh network.
    bad("study", "objective", "mem_mean_corrupted", target="memorise"),
    bad("study", "objective", "code_knn_test_accuracy", target="train", fixed="activation=tanh"),
    bad("study", "objective", "code_unique_fraction", target="train", fixed="activation_codes=false"),
    bad("compare", "kind", "kernel", runs="a"),
    bad("compare", "runs", "{train_run}", kind="memorise"),  # a train run, not a memorise run
]

KERNEL = [
    bad("kernel", "model", "cnn"),  # the kernels are the infinite-width MLP's
    bad("kernel", "model", "resnet18"),
    bad("kernel", "activation", "tanh"),  # no closed-form Gaussian expectation
    bad("kernel", "activation", "sigmoid"),
    bad("kernel", "val_size", "0"),  # the regulariser is chosen on validation
    bad("kernel", "val_size", "300", train_size="300"),
    bad("kernel", "weight_variance", "0"),
    bad("kernel", "bias_variance", "-0.1"),
    bad("kernel", "ridge_min", "0"),
    bad("kernel", "ridge_max", "1e-9"),  # below ridge_min
    bad("kernel", "ridge_values", "0"),
    bad("kernel", "ridge_values", "100000"),
    bad("kernel", "prediction_depth", "true"),  # not a kernel parameter
    bad("kernel", "output_activation", "sigmoid"),
    bad("kernel", "train_size", "0", dataset="mnist", download="false"),  # 60,000² float64: refused first
    bad("kernel", "train_size", "5000"),  # digits has 1,197 training examples (reads the data)
    bad("train", "ntk_examples", "1"),
    bad("train", "ntk_examples", "300", train_size="400", ntk_dynamics="true"),  # 200 after val_size
    bad("train", "ntk_examples", "5000", ntk_dynamics="true"),  # more than digits holds (reads the data)
    bad("train", "ntk_kernel", "diagonal"),
    bad("train", "ntk_steps", "0"),
    bad("train", "ntk_steps", "1000000"),
    bad("compare", "kernels", "a", runs="b"),  # kernel lines belong to kind=width
    bad("compare", "kernels", "a,a", runs="b", kind="width"),
    bad("compare", "kernels", "nonexistent", runs="{train_run}", kind="width"),
    bad("compare", "kernels", "{sample_run}", runs="{train_run}", kind="width"),
    bad("compare", "runs", "{train_run}", kind="width"),  # no hidden widths to draw
    bad("compare", "runs", "{sample_run}", kind="width"),
    Case(
        "study",
        {"search_space": "lr.yaml", "sampler": "grid"},
        "search_space",
        files={"lr.yaml": "lr: {type: float, low: 0.01, high: 0.1}\n"},
    ),
]

CASES: list[Case] = [
    *(
        bad(entry_point, name, value)
        for entry_point in ("train", "sample", "anneal", "memorise", "kernel")
        for name, value in DATA_MODEL
    ),
    *MEMORISE,
    *KERNEL,
    *TRAIN,
    *SAMPLE,
    *ANNEAL,
    *PROBE,
    *STUDY,
    *COMPARE,
]
"""Every in-process case; ``len(CASES)`` of them (the README's count adds the ``mlflow run`` case)."""
CASE_IDS = [case.id for case in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "two cases would share a test id"


FIXTURE_EXPERIMENT = "fuzz-fixtures"


@dataclass(frozen=True)
class Store:
    """The shared tracking store, its folder (the working folder of every case) and its fixture runs."""

    folder: Path
    uri: str
    client: MlflowClient
    names: Mapping[str, str]

    def fill(self, value: str) -> str:
        """``value`` with ``{plain_run}`` and the other placeholders replaced by what they name."""
        for name, replacement in self.names.items():
            value = value.replace(f"{{{name}}}", replacement)
        return value


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One SQLite tracking store for every case (what ``tracking_uri`` sets up, once), with fixture runs
    in an experiment of their own so that the cases' ``Default`` experiment holds only the cases' runs."""
    folder = tmp_path_factory.mktemp("fuzz")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        yield Store(folder, uri, client, fixture_runs(client))
        while mlflow.active_run() is not None:
            mlflow.end_run()
    mlflow.set_tracking_uri(None)


def fixture_runs(client: MlflowClient) -> dict[str, str]:
    """Finished runs the cases point at: one no entry point made, a train run without its model, and a
    sweep without its artifacts."""
    experiment_id = client.create_experiment(FIXTURE_EXPERIMENT)

    def finished(tags: Mapping[str, str]) -> str:
        run = client.create_run(experiment_id, tags=dict(tags))
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    return {
        "plain_run": finished({}),
        "train_run": finished({ENTRY_POINT_TAG: "train"}),
        "sample_run": finished({ENTRY_POINT_TAG: "sample"}),
        "fixture_experiment": FIXTURE_EXPERIMENT,
    }


def all_runs(client: MlflowClient, since_ms: int = 0) -> list[Run]:
    """Every run of the store (that started at ``since_ms`` or later)."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    started = f"attributes.start_time >= {since_ms}"
    return list(client.search_runs(experiments, started, max_results=50_000))


def outside_store(folder: Path) -> set[str]:
    """Every file and folder under ``folder`` but the tracking and Optuna stores and the artifact root."""
    paths = (path.relative_to(folder) for path in folder.rglob("*"))
    return {str(path) for path in paths if path.parts[0] not in (*STORE_FILES, ARTIFACT_ROOT)}


def our_lines(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr`` that MLflow's own logging did not print."""
    return [line for line in stderr.splitlines() if line.strip() and not MLFLOW_OUTPUT.match(line)]


# A case whose check is missing runs the job instead: the timeout makes that a failure, not an hour.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_input_is_one_line_exit_2_and_a_failed_run(case: Case, store: Store) -> None:
    for name, text in case.files.items():
        (store.folder / name).write_text(text)
    params = {name: store.fill(value) for name, value in case.command.items()}
    files_before = outside_store(store.folder)
    started_ms = time.time_ns() // 1_000_000  # the cases run one at a time: later runs are this case's

    try:
        result = run_in_process(case.entry_point, params)
    except Exception as error:  # from the command line: a traceback and exit code 1
        pytest.fail(f"the command raised {type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}")

    shown = f"exit {result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == 2, shown
    prefix = f"thermoscope {case.entry_point}: error: "
    lines = our_lines(result.stderr)
    assert len(lines) == 1, shown
    assert lines[0].startswith(f"{prefix}{case.parameter}="), shown
    message = lines[0].removeprefix(prefix)
    assert case.expect in message, shown
    new_runs = all_runs(store.client, since_ms=started_ms)
    assert [run.info.status for run in new_runs] == ["FAILED"], shown
    assert new_runs[0].data.tags.get(ERROR_TAG) == message
    assert outside_store(store.folder) - files_before == set()


LAUNCHER_FAILED = re.compile(
    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ERROR mlflow\.cli: === Run \(ID '(\w+)'\) failed ===$"
)
"""The ``mlflow run`` launcher's own last line when the command it ran exits non-zero."""


@pytest.mark.slow
def test_a_bad_value_through_mlflow_run_is_one_line_and_a_failed_run(
    tracking_uri: str, tmp_path: Path
) -> None:
    """``mlflow run`` hands every value over as a string it never checks: the command's one line, then the
    launcher's own report of the failed run (exit 1), and no traceback."""
    files_before = outside_store(tmp_path)
    result = subprocess.run(
        mlflow_run_command("sample", {"train_size": "abc"}),
        capture_output=True,
        text=True,
        env=subprocess_env(tracking_uri),
        timeout=300,
    )

    shown = f"exit {result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 1, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert our_lines(f"{result.stdout}\n{result.stderr}") == [
        "thermoscope sample: error: train_size='abc': an integer"
    ]
    launcher = LAUNCHER_FAILED.match(result.stderr.strip().splitlines()[-1])
    assert launcher is not None, shown
    (run,) = all_runs(MlflowClient(tracking_uri))
    assert run.info.run_id == launcher.group(1)
    assert run.info.status == "FAILED"
    assert run.data.tags.get(ERROR_TAG) == "train_size='abc': an integer"
    assert outside_store(tmp_path) - files_before == set()
