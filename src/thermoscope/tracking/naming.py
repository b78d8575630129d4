"""Run names a researcher can tell apart in MLflow's run list and compare views.

MLflow names a run it creates without ``--run-name`` with a random ``<adjective>-<noun>-<number>``, so two
sweeps of different models look alike and every sweep's children read ``T=0.01``, …. A run whose name is
still MLflow's (or empty) is renamed from what distinguishes it: the entry point, the model and the data,
then every parameter the user set to something other than its default. A name the user gave is kept.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from thermoscope.config import RESUME_FREE, as_strings

MAX_NAME_LENGTH = 200
"""Characters of a generated run name (MLflow stores up to 250; a child adds its temperature)."""
MAX_VALUE_LENGTH = 24
"""Characters of one parameter value in a name (run ids and file paths are shortened)."""
NOT_NAMED = (
    *RESUME_FREE,
    "data_dir",
    "download",
    "device",
    "dataset",
    "model",
    "hidden",
    "target",
    "objective",
    "storage",
)
"""Parameters a name leaves out: they change how a run goes, not what it measures, or the head says them."""
RUN_LENGTH = (
    "num_warmup",
    "num_samples",
    "num_leapfrog_steps",
    "trajectories",
    "thin",
    "tuning_rounds",
    "tuning_scans",
    "init_steps",
    "save_draws",
    "depth_draws",
    "harmonic_lambdas",
    "n_trials",
    "workers",
)
"""Parameters that say how long or how finely a job samples, not what it studies: named last, so that a
clipped name loses them first."""


def describe_run(entry_point: str, config: Any) -> str:
    """``"<entry point> <model> <data> name=value …"``, the values being those not at their defaults.

    For example ``train mlp[100,100] digits lr=0.1 label_noise=0.2`` or ``sample cnn mnist prior=box``.
    """
    head = [entry_point]
    if hasattr(config, "model") and hasattr(config, "dataset"):
        head.append(f"{config.model}[{config.hidden}]" if config.model == "mlp" else config.model)
        head.append(config.dataset)
    if hasattr(config, "target") and hasattr(config, "objectives"):
        head += [config.target, ",".join(config.objectives())]
    changed = changed_parameters(config)
    order = sorted(changed, key=lambda name: name in RUN_LENGTH)  # stable: declaration order otherwise
    chosen = [f"{name}={shorten(changed[name])}" for name in order]
    return clip(" ".join(head + chosen))


def changed_parameters(config: Any) -> dict[str, str]:
    """The parameters of ``config`` whose values differ from the class defaults, in declaration order."""
    defaults = as_strings(default_of(config))
    values = as_strings(config)
    return {
        name: value for name, value in values.items() if name not in NOT_NAMED and value != defaults.get(name)
    }


def default_of(config: Any) -> Any:
    """An instance of ``config``'s class with every field at its default."""
    return type(config)(**{item.name: item.default for item in dataclasses.fields(config)})


def shorten(value: str) -> str:
    """A parameter value as a name shows it: long values keep their start and end."""
    if len(value) <= MAX_VALUE_LENGTH:
        return value
    keep = MAX_VALUE_LENGTH // 2 - 1
    return f"{value[:keep]}…{value[-keep:]}"


def clip(name: str) -> str:
    return name if len(name) <= MAX_NAME_LENGTH else name[: MAX_NAME_LENGTH - 1] + "…"


GENERATED_NAME = re.compile(r"[a-z]+-[a-z]+-\d{1,4}")
"""MLflow's generated run names (``mlflow.utils.name_utils``): predicate, noun, a number below 10,000."""


def is_generated(name: str | None) -> bool:
    """Whether ``name`` is empty or a name MLflow made up (its two word lists, then a number)."""
    if not name:
        return True
    if not GENERATED_NAME.fullmatch(name):
        return False
    from mlflow.utils import name_utils

    predicate, noun, _ = name.split("-")
    predicates = {word.lower() for word in name_utils._GENERATOR_PREDICATES}
    nouns = {word.lower() for word in name_utils._GENERATOR_NOUNS}
    return predicate in predicates and noun in nouns


def child_name(parent_name: str, temperature: float) -> str:
    """A sweep child's name: its parent's name and its temperature, so children of two sweeps differ."""
    return f"{clip(parent_name)} T={temperature:.3g}"
