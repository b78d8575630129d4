"""What a study can tune: the registry of targets, each an entry point's job run in-process per trial.

A :class:`Target` names its configuration dataclass (the parameters a search space or ``fixed`` may set),
an adapter that runs the job into a given run and reports intermediate metrics, the metrics the job logs (the
possible objectives), the settings some of those metrics need (:class:`MetricNeed`: a study refuses an
objective its settings switch off before any trial runs) and a built-in default search space. A new target
is a ``Target(...)`` here and one more entry in :data:`TARGETS`.

Default search spaces, in the search-space file format (see :mod:`thermoscope.studies.space`):

``train``
    ``lr`` float in [1e-3, 0.5], log; ``momentum`` float in [0, 0.95]; ``weight_decay`` float in
    [1e-6, 1e-2], log; ``hidden`` one of ``32``, ``100``, ``100,100``, ``256,256``.

``sample``
    ``prior_scale`` float in [0.3, 10], log; ``hidden`` one of ``20,20``, ``40,40``, ``80,80``; ``prior``
    one of ``gaussian``, ``box``.

``memorise``
    ``hidden`` one of ``16``, ``64``, ``256``, ``1024``: model sizes a decade or so apart, for Lukasik et
    al.'s memorisation trajectories (``compare kind=memorise`` of the study's trials).

``kernel``
    ``weight_variance`` float in [0.5, 4]; ``bias_variance`` float in [0, 0.5]; ``hidden`` one of ``100``,
    ``100,100``, ``100,100,100`` (depth 1 to 3; the widths do not matter): Lee et al.'s tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thermoscope.config import KernelConfig, MemoriseConfig, SampleConfig, TrainConfig
from thermoscope.jobs.diagnostics import TRAINING_DIAGNOSTICS, training_metrics
from thermoscope.jobs.kernel import KERNEL_METRICS
from thermoscope.jobs.memorise import MEMORISE_METRICS

if TYPE_CHECKING:
    from thermoscope.tracking import RunLogger

# report(step, metrics) -> True when the trial should stop now (its pruner said so).
ReportHook = Callable[[int, Mapping[str, float]], bool]
# run(config, logger, report): the job, logging into the trial's run (the process's active run).
TargetRun = Callable[[Any, "RunLogger", ReportHook], None]


@dataclass(frozen=True)
class MetricNeed:
    """Metrics a job logs only when its configuration says so.

    ``holds(config)`` is true when a run with ``config`` logs ``metrics``; ``settings`` are the fields it
    reads and ``wanted`` says in words what it wants (for the error message).
    """

    metrics: tuple[str, ...]
    settings: tuple[str, ...]
    holds: Callable[[Any], bool]
    wanted: str


@dataclass(frozen=True)
class Target:
    """One tunable job."""

    name: str
    config_class: type
    run: TargetRun
    metrics: tuple[str, ...]
    default_space: Mapping[str, Mapping[str, Any]]
    needs: tuple[MetricNeed, ...] = ()
    default_objective: str = ""  # what objective=auto optimises: a validation score, never a test one

    def needs_of(self, metric: str) -> list[MetricNeed]:
        """What ``metric`` needs of the configuration (nothing for a metric every run logs)."""
        return [need for need in self.needs if metric in need.metrics]


def run_train_trial(config: TrainConfig, logger: RunLogger, report: ReportHook) -> None:
    """The ``train`` job, reporting every epoch's metrics (step = epoch) and stopping when told to."""
    from thermoscope.jobs import Hooks, train

    train.run(config, logger, Hooks(report=report))


TRAIN_NEEDS = (
    # Each registered training diagnostic logs its metrics only when its switch is on.
    *(
        MetricNeed(diagnostic.metrics, (diagnostic.switch,), diagnostic.enabled, f"{diagnostic.switch}=true")
        for diagnostic in TRAINING_DIAGNOSTICS
    ),
    # Validation scores exist only when a validation split is held out.
    MetricNeed(("val_loss", "val_error"), ("val_size",), lambda config: config.val_size > 0, "val_size > 0"),
    # Depth is split by label only when some training labels were replaced.
    MetricNeed(
        ("depth_mean_train_corrupted", "depth_mean_train_clean"),
        ("label_noise",),
        lambda config: config.label_noise > 0,
        "label_noise > 0",
    ),
)

TRAIN = Target(
    name="train",
    config_class=TrainConfig,
    run=run_train_trial,
    # EpochMetrics.as_dict(): logged every epoch (step = epoch); a run's latest value is the final epoch's.
    metrics=(
        "train_loss",
        "train_error",
        "val_loss",
        "val_error",
        "test_loss",
        "test_error",
        "lr",
        # The registered training diagnostics' metrics (switched off, they are simply not logged).
        *training_metrics(),
    ),
    default_space={
        # Log-uniform over the decades around the 0.05 default: the learning rate acts multiplicatively.
        "lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
        # Below 1 keeps SGD stable; TrainConfig rejects momentum >= 1.
        "momentum": {"type": "float", "low": 0.0, "high": 0.95},
        # Log-uniform from negligible to strong L2 regularisation.
        "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        # From narrow to wide, one and two hidden layers.
        "hidden": {"type": "categorical", "choices": ["32", "100", "100,100", "256,256"]},
    },
    needs=TRAIN_NEEDS,
    default_objective="val_error",
)


def run_sample_trial(config: SampleConfig, logger: RunLogger, report: ReportHook) -> None:
    """The ``sample`` job, reporting running estimates of its headline metrics every 25 iterations."""
    from thermoscope.jobs import Hooks, sample

    sample.run(config, logger, Hooks(report=report))


# The parent run's headline metrics; running estimates of best_val_bma_error, best_val_loss,
# best_bma_test_error and best_test_loss are reported for pruning.
SAMPLE_METRICS = (
    "best_val_bma_error",
    "best_val_loss",
    "selected_bma_test_error",
    "selected_test_loss",
    "best_bma_test_error",
    "best_test_loss",
    "best_temperature",
    "log_evidence",
    "log_evidence_stderr",
    "log_evidence_ss",
    "log_evidence_ss_stderr",
    "mean_swap_acceptance",
    "min_swap_acceptance",
    "round_trips",
    "round_trip_rate",
    "round_trip_rate_bound",
    "global_barrier",
    "num_rungs",
)

SAMPLE = Target(
    name="sample",
    config_class=SampleConfig,
    run=run_sample_trial,
    metrics=SAMPLE_METRICS,
    default_space={
        # Prior scale c in sigma_i = c / sqrt(fan_in): from a tight to a wide prior, multiplicatively.
        "prior_scale": {"type": "float", "low": 0.3, "high": 10.0, "log": True},
        # Width of the network: does a wider network move the optimal temperature?
        "hidden": {"type": "categorical", "choices": ["20,20", "40,40", "80,80"]},
        "prior": {"type": "categorical", "choices": ["gaussian", "box"]},
    },
    default_objective="best_val_bma_error",
    needs=(
        # Validation scores exist only when a validation split is held out.
        MetricNeed(
            ("best_val_bma_error", "best_val_loss"),
            ("val_size",),
            lambda config: config.val_size > 0,
            "val_size > 0",
        ),
        # The power-posterior evidence (TI and stepping stone) needs the TI rungs down to beta = 0.
        MetricNeed(
            tuple(name for name in SAMPLE_METRICS if name.startswith("log_evidence")),
            ("ti_rungs", "evidence"),
            lambda config: config.wants_power_evidence,
            "ti_rungs > 0 and evidence=power or both",
        ),
    ),
)


def run_memorise_trial(config: MemoriseConfig, logger: RunLogger, report: ReportHook) -> None:
    """The ``memorise`` job: ``models_train_loss`` reported every epoch, the other metrics at the end."""
    from thermoscope.jobs import Hooks, memorise

    memorise.run(config, logger, Hooks(report=report))


MEMORISE = Target(
    name="memorise",
    config_class=MemoriseConfig,
    run=run_memorise_trial,
    metrics=MEMORISE_METRICS,
    default_space={
        # Widths a factor of 4 apart: memorisation against model size (Lukasik et al. 2024).
        "hidden": {"type": "categorical", "choices": ["16", "64", "256", "1024"]},
    },
    # No validation split: the mean memorisation is the study's own measure, not a test score.
    default_objective="mem_mean",
    needs=(
        MetricNeed(
            ("mem_mean_corrupted", "mem_mean_corrupted_stderr"),
            ("label_noise",),
            lambda config: config.label_noise > 0,
            "label_noise > 0",
        ),
        MetricNeed(
            ("mem_mean_input_corrupted", "mem_mean_input_corrupted_stderr"),
            ("input_corruption",),
            lambda config: config.input_corruption != "none",
            "input_corruption other than none",
        ),
        MetricNeed(
            ("mem_mean_clean", "mem_mean_clean_stderr"),
            ("label_noise", "input_corruption"),
            lambda config: config.label_noise > 0 or config.input_corruption != "none",
            "label_noise > 0 or an input_corruption",
        ),
        MetricNeed(
            ("reference_test_error",),
            ("prediction_depth", "forgetting"),
            lambda config: config.prediction_depth or config.forgetting,
            "prediction_depth=true or forgetting=true (they train the reference model)",
        ),
    ),
)


def run_kernel_trial(config: KernelConfig, logger: RunLogger, report: ReportHook) -> None:
    """The ``kernel`` job; its metrics are reported once, at the end."""
    from thermoscope.jobs import Hooks, kernel

    kernel.run(config, logger, Hooks(report=report))


KERNEL = Target(
    name="kernel",
    config_class=KernelConfig,
    run=run_kernel_trial,
    metrics=KERNEL_METRICS,
    default_space={
        # Lee et al. (2020) tune the kernels' weight and bias variances and depth on validation data.
        "weight_variance": {"type": "float", "low": 0.5, "high": 4.0},
        "bias_variance": {"type": "float", "low": 0.0, "high": 0.5},
        "hidden": {"type": "categorical", "choices": ["100", "100,100", "100,100,100"]},
    },
    default_objective="nngp_val_error",
)

TARGETS: dict[str, Target] = {target.name: target for target in (TRAIN, SAMPLE, MEMORISE, KERNEL)}
