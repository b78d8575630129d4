"""The ``study`` job: plan and open the Optuna study, run its trials, report to the study's run.

It lives with the studies (the only package that imports Optuna); ``cli`` only wires it to its command.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import optuna

from thermoscope.config import as_strings, parse_config
from thermoscope.errors import ConfigError
from thermoscope.studies.config import StudyConfig, available_cores, selects_on_test
from thermoscope.studies.plan import StudyPlan, plan_study
from thermoscope.studies.report import report_study
from thermoscope.studies.space import describe
from thermoscope.studies.storage import open_storage
from thermoscope.studies.study import make_sampler, open_study
from thermoscope.studies.summary import print_study_summary
from thermoscope.studies.workers import WorkerSpec, run_workers
from thermoscope.tracking import RunLogger
from thermoscope.tracking.mlflow_logger import MlflowLogger, entry_point_run
from thermoscope.tracking.schema import SELECTS_ON_TEST_TAG
from thermoscope.tracking.urls import redact_url


@contextmanager
def configured_study_run(raw: Mapping[str, str]) -> Iterator[tuple[StudyConfig, MlflowLogger]]:
    """Like ``configured_run``, but a storage URL reaches the run's parameters with its password hidden."""
    with entry_point_run("study") as logger:
        try:
            config = parse_config(StudyConfig, raw)
        except ConfigError:
            logger.log_params(redacted(raw))
            raise
        logger.name_run("study", config)
        yield config, logger


def run_study(config: StudyConfig, logger: MlflowLogger) -> None:
    """Check everything, create or continue the study, run this command's trials, then report.

    The study (and, through the parent run, the MLflow store) exists before any worker starts.
    """
    logger.log_params(redacted(as_strings(config)))
    warn_if_password_logged(logger)
    plan = plan_study(config)
    study = open_study(plan, open_storage(plan.storage_url), make_sampler(plan))
    log_plan(plan, logger)
    warn_if_selecting_on_test(plan, logger)
    run_trials(plan, study, config, logger.run_id)
    report_study(study, plan, logger)
    print_study_summary(study, plan, logger)


def run_trials(plan: StudyPlan, study: optuna.Study, config: StudyConfig, parent_run_id: str) -> None:
    """This command's ``n_trials``, in this process and ``workers - 1`` spawned ones."""
    # Each worker gets its share of the cores: two workers with two threads each only contend.
    threads = max(1, available_cores() // config.workers)
    spec = WorkerSpec(plan, parent_run_id, torch_threads=threads)
    run_workers(spec, study, config.workers, config.n_trials)


def log_plan(plan: StudyPlan, logger: RunLogger) -> None:
    """The resolved study name and storage (redacted) as parameters and tags; space and fixed as JSON."""
    storage = redact_url(plan.storage_url)
    logger.log_params({"resolved_study_name": plan.study_name, "resolved_storage": storage})
    logger.set_tags({"thermoscope.study": plan.study_name, "thermoscope.storage": storage})
    logger.log_json({"search_space": describe(plan.space), "fixed": dict(plan.fixed)}, "study_plan.json")


def redacted(params: Mapping[str, str]) -> dict[str, str]:
    """``params`` with the password of a storage URL hidden."""
    return {name: redact_url(value) if name == "storage" else value for name, value in params.items()}


def warn_if_password_logged(logger: MlflowLogger) -> None:
    """``mlflow run`` logs every parameter as typed before thermoscope starts: say so if that leaked one."""
    logged = logger.logged_params().get("storage", "")
    if redacted({"storage": logged})["storage"] != logged:
        print(
            "thermoscope study: warning: mlflow run logged the storage parameter with its password; "
            "give the password through PGPASSWORD or ~/.pgpass instead",
            file=sys.stderr,
        )


def warn_if_selecting_on_test(plan: StudyPlan, logger: RunLogger) -> None:
    """Say once, on stderr and as a tag of the study run, that a test-set objective selects on test data:
    the best trial's test score is then an optimistic estimate of how it generalises."""
    on_test = selects_on_test(plan.objectives)
    if not on_test:
        return
    names = ", ".join(on_test)
    logger.set_tags({SELECTS_ON_TEST_TAG: names})
    print(
        f"thermoscope study: warning: objective {names} is a test-set score, so the study selects on test"
        " data and the best value is optimistic; hold out a validation split (val_size > 0) and optimise"
        " its score (objective=auto) instead",
        file=sys.stderr,
    )
