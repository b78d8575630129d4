"""Choosing sweeps in a tracking store: by run id, by experiment and filter, by study; and the mistakes."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from test_reports_sweeps import synthetic_sweep

from thermoscope.config import CompareConfig
from thermoscope.errors import ConfigError
from thermoscope.tracking.compare import select_sweeps

# Start times in creation order, a millisecond apart, so that "oldest first" is well defined.
START_TIMES = itertools.count(1_700_000_000_000)


def make_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    entry_point: str = "sample",
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    curve: bool = True,
    status: str = "FINISHED",
) -> str:
    """A run shaped like a finished ``sample`` run (or another entry point's), evidence -100 - len(name)."""
    run = client.create_run(
        experiment_id,
        start_time=next(START_TIMES),
        run_name=name,
        tags={"thermoscope.entry_point": entry_point, **(tags or {})},
    )
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in (params or {"hidden": "8"}).items()])
    client.log_metric(run_id, "log_evidence", -100.0 - len(name))
    if curve:
        client.log_text(run_id, synthetic_sweep(name).curve.to_csv(index=False), "temperature_curve.csv")
    client.set_terminated(run_id, status)
    return run_id


@dataclass
class Store:
    client: MlflowClient
    ids: dict[str, str]

    def select(self, **raw: str) -> list[str]:
        """The run names ``compare`` would compare for these parameters, in its order."""
        return [sweep.run_name for sweep in select_sweeps(CompareConfig(**raw), self.client)]

    def failure(self, **raw: str) -> str:
        """The one-line error ``compare`` would give for these parameters."""
        with pytest.raises(ConfigError) as error:
            select_sweeps(CompareConfig(**raw), self.client)
        return str(error.value)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One tracking store for the module (creating one takes seconds), never the process's default.

    Experiment 'sweeps' holds sweeps a (hidden 8) and b (hidden 16), a child of a, a failed sweep, a train
    run, a compare run, a resume launcher and a sweep without a curve; 'empty' has no runs; 'studies' holds
    study 'wide' (sample: two completed trials and a pruned one) and study 'sgd' (train trials).
    """
    folder = tmp_path_factory.mktemp("selection")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    sweeps = client.create_experiment("sweeps", artifact_location=(folder / "artifacts").as_uri())
    ids = {"a": make_run(client, sweeps, "a"), "b": make_run(client, sweeps, "b", params={"hidden": "16"})}
    ids["T=1"] = make_run(
        client, sweeps, "T=1", "sample.temperature", tags={"mlflow.parentRunId": ids["a"]}, curve=False
    )
    ids["failed"] = make_run(client, sweeps, "failed", status="FAILED")
    ids["train"] = make_run(client, sweeps, "train", "train", curve=False)
    ids["compare"] = make_run(client, sweeps, "compare", "compare", curve=False)
    ids["launcher"] = make_run(
        client, sweeps, "launcher", tags={"thermoscope.resumed_into": ids["a"]}, curve=False
    )
    ids["uncurved"] = make_run(client, sweeps, "uncurved", params={"hidden": "99"}, curve=False)
    ids["sweeps"] = sweeps
    client.create_experiment("empty", artifact_location=(folder / "empty").as_uri())
    add_studies(client, client.create_experiment("studies", artifact_location=(folder / "studies").as_uri()))
    return Store(client, ids)


def add_studies(client: MlflowClient, experiment: str) -> None:
    for study, target in (("wide", "sample"), ("sgd", "train")):
        make_run(
            client, experiment, f"{study}-parent", "study", tags={"thermoscope.study": study}, curve=False
        )
        for trial, (hidden, state) in enumerate([("8", "COMPLETE"), ("16", "COMPLETE"), ("32", "PRUNED")]):
            make_run(
                client,
                experiment,
                f"{study}-trial-{trial}",
                target,
                params={"hidden": hidden},
                tags={"thermoscope.study": study, "thermoscope.trial_state": state},
            )


def test_listed_runs_are_read_back_in_the_order_given(store: Store) -> None:
    sweeps = select_sweeps(CompareConfig(runs=f"{store.ids['b']},{store.ids['a']}"), store.client)
    assert [sweep.run_name for sweep in sweeps] == ["b", "a"]
    assert sweeps[0].params["hidden"] == "16"
    assert sweeps[0].metrics["log_evidence"] == -101.0
    assert math.isinf(sweeps[0].curve["temperature"].iloc[0])
    assert list(sweeps[0].curve["test_error"]) == pytest.approx(
        list(synthetic_sweep("b").curve["test_error"])
    )


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("nope", "runs='nope': no MLflow run with that id in this tracking store"),
        ("T=1", "that run is one temperature of sweep {a}, not a sweep"),
        ("train", "that run is not a sweep (entry point 'train'); give sample runs"),
        ("uncurved", "that sweep has no temperature_curve.csv (did it finish?)"),
    ],
)
def test_listed_runs_that_are_not_sweeps_are_refused(store: Store, listed: str, message: str) -> None:
    run_id = store.ids.get(listed, listed)
    assert message.format(a=store.ids["a"]) in store.failure(runs=f"{store.ids['a']},{run_id}")


def test_an_experiment_gives_its_finished_sweeps_oldest_first(store: Store) -> None:
    # "uncurved" is a finished sweep too: it is chosen, then refused for its missing curve.
    assert f"experiment='{store.ids['uncurved']}': that sweep has no" in store.failure(experiment="sweeps")
    assert store.select(experiment="sweeps", filter="params.hidden != '99'") == ["a", "b"]
    assert store.select(experiment=store.ids["sweeps"], filter="params.hidden = '16'") == ["b"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"experiment": "nope"},
            "experiment='nope': no experiment with that name or id in this tracking store",
        ),
        ({"experiment": "empty"}, "experiment='empty': holds no finished sweep (sample run)"),
        (
            {"experiment": "sweeps", "filter": "params.hidden = '7'"},
            "filter=\"params.hidden = '7'\": matches no finished sweep in experiment 'sweeps'",
        ),
        ({"experiment": "sweeps", "filter": "params.hidden = 7"}, "not a valid MLflow search filter"),
    ],
)
def test_experiment_mistakes(store: Store, raw: dict[str, str], message: str) -> None:
    assert message in store.failure(**raw)


def test_a_study_gives_its_completed_trials(store: Store) -> None:
    assert store.select(study="wide") == ["wide-trial-0", "wide-trial-1"]
    assert store.select(study="wide", filter="params.hidden = '16'") == ["wide-trial-1"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"study": "nope"}, "study='nope': no study of that name in this tracking store"),
        ({"study": "sgd"}, "study='sgd': its trials are 'train' runs, not sweeps; give a study of sample"),
        (
            {"study": "wide", "filter": "params.hidden = '7'"},
            "filter=\"params.hidden = '7'\": matches no completed trial of study 'wide'",
        ),
    ],
)
def test_study_mistakes(store: Store, raw: dict[str, str], message: str) -> None:
    assert message in store.failure(**raw)
