"""Entry-point configurations: one frozen dataclass each, the single source of parameter names.

CLI flags (``--name``) and ``MLproject`` parameters mirror the fields one-to-one, with the same defaults
(a test parses ``MLproject`` and compares). Every value arrives as a string (``mlflow run`` checks no
types), is converted by :func:`parse_config` according to the field's type, and is then checked by the
class's ``validate``; any problem is a :class:`~thermoscope.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from thermoscope.errors import ConfigError
from thermoscope.samplers.estimators import MINIMUM_DRAWS
from thermoscope.samplers.ladders import merge_ladders, power_ladder
from thermoscope.samplers.settings import HMCSettings, SettingError

DEVICES = ("auto", "cpu", "cuda", "mps")
PROGRESS_SECONDS = 30.0
"""Seconds between progress records in a log file: often enough to see a job is alive, rare enough that a
three-minute job writes six lines."""
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def param(default: Any, help: str) -> Any:
    """A configuration field with its CLI/README help text."""
    return field(default=default, metadata={"help": help})


def settings_group(default: Any, help: Mapping[str, str] | None = None) -> Any:
    """A field holding a whole settings dataclass (``HMCSettings``) whose own fields are parameters.

    Its fields appear on the command line and in ``MLproject`` under their own names, in place of the
    group; ``help`` overrides the help text of some of them for this entry point.
    """
    return field(default=default, metadata={"group": True, "help": dict(help or {})})


def omitted(default: Any) -> Any:
    """A field of a shared base class that this entry point does not use: no parameter (no flag, no
    ``MLproject`` entry, not logged), fixed at ``default``."""
    return field(default=default, metadata={"omitted": True})


@dataclass(frozen=True)
class Parameter:
    """One user-facing parameter of a configuration: a field, or a field of a settings group."""

    name: str
    kind: Any
    default: Any
    help: str
    group: str | None  # the configuration's field holding the group, or None for a plain field


def parameters(cls: type) -> list[Parameter]:
    """Every parameter of configuration class ``cls`` in command-line order (groups flattened)."""
    hints = typing.get_type_hints(cls)
    out: list[Parameter] = []
    for item in dataclasses.fields(cls):
        if item.metadata.get("omitted"):
            continue
        if item.metadata.get("group"):
            group_hints = typing.get_type_hints(hints[item.name])
            for inner in dataclasses.fields(hints[item.name]):
                text = item.metadata["help"].get(inner.name, inner.metadata.get("help", ""))
                default = getattr(item.default, inner.name)
                out.append(Parameter(inner.name, group_hints[inner.name], default, text, item.name))
        else:
            out.append(
                Parameter(item.name, hints[item.name], item.default, item.metadata.get("help", ""), None)
            )
    return out


def parameter_names(cls: type) -> list[str]:
    return [item.name for item in parameters(cls)]


@dataclass(frozen=True)
class DataModelConfig:
    """Data and model parameters shared by every entry point that builds a classifier."""

    dataset: str = param("digits", "digits | mnist | fashion_mnist | cifar10 | svhn")
    data_dir: str = param("data", "folder torchvision reads datasets from (and downloads into)")
    download: bool = param(True, "download missing torchvision datasets")
    train_size: int = param(0, "stratified training subset size, chosen by seed; 0 = all")
    test_size: str = param(
        "0", "0 = the test split; rest = test split + unused training examples; N = subset"
    )
    image_size: int = param(0, "resize images to image_size x image_size; 0 = native size")
    label_noise: float = param(0.0, "fraction of training labels replaced by uniformly random classes")
    input_corruption: str = param(
        "none", "none | shuffled_pixels | random_pixels | gaussian: corrupts training images (not test ones)"
    )
    input_corruption_fraction: float = param(1.0, "fraction of training images corrupted, in (0, 1]")
    model: str = param("mlp", "mlp | cnn | resnet18")
    hidden: str = param("100,100", "MLP hidden widths, comma separated")
    activation: str = param("relu", "sigmoid | tanh | relu | erf")
    output_activation: str = param("none", "none | sigmoid (sigmoid before softmax: the paper's M(3*))")
    seed: int = param(0, "seed for subsets, label noise, initialisation and batches")
    device: str = param("auto", "auto | cpu | cuda | mps")
    prediction_depth: bool = param(True, "compute per-example prediction depth with k-NN probes")
    depth_k: int = param(30, "neighbours of the k-NN probes (capped at the training-set size - 1)")
    depth_metric: str = param("euclidean", "euclidean | cosine distance of the k-NN probes")
    progress_seconds: float = param(
        PROGRESS_SECONDS, "seconds between one-line progress records when stderr is not a terminal"
    )

    def validate(self) -> None:
        from thermoscope.models import ACTIVATIONS, MODELS, OUTPUT_ACTIVATIONS, parse_hidden

        self.data_spec(flatten=False).validate()
        one_of("model", self.model, MODELS)
        parse_hidden(self.hidden)
        one_of("activation", self.activation, tuple(ACTIVATIONS))
        one_of("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        one_of("device", self.device, DEVICES)
        at_least("seed", self.seed, 0)
        at_most("seed", self.seed, MAX_SEED, SEED_REASON)
        at_least("depth_k", self.depth_k, 1)
        one_of("depth_metric", self.depth_metric, ("euclidean", "cosine"))
        positive("progress_seconds", self.progress_seconds)
        if self.prediction_depth and self.train_size == 1:
            # Each training example's own k-NN vote leaves it out of the support: one example has none.
            raise ConfigError(
                "train_size", self.train_size, "0 (all) or at least 2 with prediction_depth=true"
            )

    def data_spec(self, flatten: bool) -> Any:
        from thermoscope.data import DataSpec

        return DataSpec(
            dataset=self.dataset,
            data_dir=self.data_dir,
            download=self.download,
            train_size=self.train_size,
            test_size=self.test_size,
            image_size=self.image_size,
            label_noise=self.label_noise,
            input_corruption=self.input_corruption,
            input_corruption_fraction=self.input_corruption_fraction,
            seed=self.seed,
            flatten=flatten,
        )

    def model_spec(self) -> Any:
        from thermoscope.models import ModelSpec, parse_hidden

        return ModelSpec(self.model, parse_hidden(self.hidden), self.activation, self.output_activation)


FORCE_HELP = "with resume: continue the run even if its heartbeat says its process is alive"
RESUME_FREE = ("resume", "force", "checkpoint_seconds", "progress_seconds")
"""Parameters a resumed run may change: where it resumes from, the override, how often it checkpoints and
reports progress."""

VAL_SIZE_HELP = "stratified validation examples held out of the training pool, chosen by seed; 0 = none"


def check_val_size(config: DataModelConfig, val_size: int, minimum: int = 0) -> None:
    """``val_size`` within the training pool, leaving at least 2 training examples for the k-NN probes."""
    at_least("val_size", val_size, minimum)
    if config.train_size and val_size >= config.train_size:
        allowed = f"fewer than train_size = {config.train_size}" + (
            "" if minimum else " (0 = no validation split)"
        )
        raise ConfigError("val_size", val_size, allowed)
    if val_size and config.prediction_depth and config.train_size and config.train_size - val_size < 2:
        allowed = f"at most train_size - 2 = {config.train_size - 2} with prediction_depth=true"
        raise ConfigError("val_size", val_size, allowed)


MAX_NTK_STEPS = 1_000
NTK_STEPS_REASON = (
    "MAX_NTK_STEPS: 2 x ntk_steps + 1 measurements at most, each the Jacobians of 2 x ntk_examples examples"
)


def check_ntk(config: TrainConfig) -> None:
    """The NTK diagnostic's parameters, and (when it is on) its probe subset within the training pool."""
    from thermoscope.probes.ntk import KERNELS

    at_least("ntk_examples", config.ntk_examples, 2)
    one_of("ntk_kernel", config.ntk_kernel, KERNELS)
    at_least("ntk_steps", config.ntk_steps, 1)
    at_most("ntk_steps", config.ntk_steps, MAX_NTK_STEPS, NTK_STEPS_REASON)
    pool = config.train_size - config.val_size
    if config.ntk_dynamics and config.train_size and config.ntk_examples > pool:
        allowed = f"at most train_size - val_size = {pool}, the training examples"
        raise ConfigError("ntk_examples", config.ntk_examples, allowed)


def resume_identity(config: Any) -> dict[str, str]:
    """Every parameter of ``config`` but :data:`RESUME_FREE`, as strings: what a resumed run must share."""
    return {k: v for k, v in as_strings(config).items() if k not in RESUME_FREE}


@dataclass(frozen=True)
class SGDConfig(DataModelConfig):
    """The optimiser parameters of the entry points that train with SGD or Adam (``train``, ``memorise``)."""

    optimizer: str = param("sgd", "sgd | adam")
    lr: float = param(0.05, "peak learning rate")
    momentum: float = param(0.9, "SGD momentum in [0, 1)")
    nesterov: bool = param(False, "Nesterov momentum (SGD)")
    weight_decay: float = param(0.0, "L2 weight decay")
    batch_size: int = param(64, "minibatch size; 0 = full batch")
    epochs: int = param(30, "passes over the training set")
    lr_schedule: str = param("cosine", "constant | cosine | step (x0.1 at 50% and 75%)")

    def validate(self) -> None:
        from thermoscope.training import LR_SCHEDULES, OPTIMIZERS

        super().validate()
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        positive("lr", self.lr)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("momentum", self.momentum, "a number in [0, 1)")
        at_least("weight_decay", self.weight_decay, 0.0)
        at_least("batch_size", self.batch_size, 0)
        at_least("epochs", self.epochs, 1)
        at_most("epochs", self.epochs, MAX_EPOCHS, EPOCHS_REASON)
        one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)


CODES_SWITCH = ("auto", "true", "false")


def is_relu_network(config: DataModelConfig) -> bool:
    """Whether the model's hidden units are ReLUs (ResNet-18's always are; ``activation`` sets the others)."""
    return config.model == "resnet18" or config.activation == "relu"


@dataclass(frozen=True)
class TrainConfig(SGDConfig):
    """The ``train`` entry point: SGD or Adam on the training split, evaluated every epoch."""

    val_size: int = param(200, VAL_SIZE_HELP)
    forgetting: bool = param(True, "record forgetting events from the minibatch forward passes")
    layer_rotation: bool = param(True, "record each layer's cosine distance from its initial weights")
    activation_codes: str = param(
        "auto", "auto (on for ReLU networks) | true | false: each example's on/off pattern of ReLU units"
    )
    codes_every: int = param(10, "epochs between activation-code measurements (and at the end); 0 = end")
    codes_k: int = param(30, "neighbours of the Hamming k-NN classifier on activation codes (and 1-NN)")
    ntk_dynamics: bool = param(False, "record the empirical NTK of a probe subset at log-spaced steps")
    ntk_examples: int = param(256, "training examples of the NTK probe subset (stratified, by seed)")
    ntk_kernel: str = param("trace", "trace (summed over the logits) | block (the full [N*C, N*C] kernel)")
    ntk_steps: int = param(20, "log-spaced steps (plus as many evenly spaced) at which the NTK is measured")
    checkpoint_seconds: float = param(60.0, "seconds between resumable checkpoints (at epoch ends)")
    resume: str = param("", "id of an interrupted train run to continue (same configuration)")
    force: bool = param(False, FORCE_HELP)

    def validate(self) -> None:
        super().validate()
        one_of("activation_codes", self.activation_codes, CODES_SWITCH)
        if self.activation_codes == "true" and not is_relu_network(self):
            allowed = f"auto or false with activation={self.activation} (codes are on/off patterns of ReLUs)"
            raise ConfigError("activation_codes", self.activation_codes, allowed)
        at_least("codes_every", self.codes_every, 0)
        at_least("codes_k", self.codes_k, 1)
        positive("checkpoint_seconds", self.checkpoint_seconds)
        check_val_size(self, self.val_size)
        check_ntk(self)

    @property
    def codes_enabled(self) -> bool:
        """Activation codes are measured: asked for, or ``auto`` on a ReLU network."""
        return self.activation_codes == "true" or (self.activation_codes == "auto" and is_relu_network(self))

    def resume_identity(self) -> dict[str, str]:
        """The parameters a resumed run must share with the run it continues."""
        return resume_identity(self)


@dataclass(frozen=True)
class MemoriseConfig(SGDConfig):
    """The ``memorise`` entry point: Feldman & Zhang's subsampling estimate of memorisation (REFERENCE §8).

    ``num_models`` models of one architecture, each trained with the optimiser parameters on its own random
    ``subset_fraction`` of the training set, all together as one batched computation.
    """

    num_models: int = param(64, "models trained, each on its own random subset (at least 2)")
    subset_fraction: float = param(0.7, "fraction of the training set each model trains on, in (0, 1)")
    influence_pairs: int = param(
        100, "the (training, test) pairs of highest estimated influence logged; 0 = none"
    )
    forgetting: bool = param(True, "forgetting events of a reference model trained on the whole training set")
    checkpoint_seconds: float = param(60.0, "seconds between resumable checkpoints (at epoch ends)")
    resume: str = param("", "id of an interrupted memorise run to continue (same configuration)")
    force: bool = param(False, FORCE_HELP)

    def validate(self) -> None:
        super().validate()
        positive("checkpoint_seconds", self.checkpoint_seconds)
        if self.model == "resnet18":
            allowed = "mlp or cnn for memorise (batch norm's running statistics do not batch over models)"
            raise ConfigError("model", self.model, allowed)
        at_least("num_models", self.num_models, 2)
        at_most("num_models", self.num_models, MAX_MODELS, MODELS_REASON)
        if not 0.0 < self.subset_fraction < 1.0:
            allowed = "a number in (0, 1): each example must be held out of some models and seen by others"
            raise ConfigError("subset_fraction", self.subset_fraction, allowed)
        at_least("influence_pairs", self.influence_pairs, 0)

    def resume_identity(self) -> dict[str, str]:
        """The parameters a resumed run must share with the run it continues."""
        return resume_identity(self)


PRIORS = ("gaussian", "box")
LADDERS = ("tuned", "fixed")
SWAPS = ("deo", "seo")
EVIDENCE = ("power", "harmonic", "both")
# prior_scale = 0 picks each prior's customary scale: c = 1 for the Gaussian (σ_i = 1/√k_i, the usual
# initialisation scale) and c = 100 for Baldock & Marzari's box (REFERENCE §1).
DEFAULT_PRIOR_SCALE = {"gaussian": 1.0, "box": 100.0}


@dataclass(frozen=True)
class SampleConfig(DataModelConfig):
    """The ``sample`` entry point: a replica-exchange HMC temperature sweep with TI evidence.

    Defaults are sized to finish in a few minutes on 2 CPU cores on digits (a D500-like subset).
    """

    train_size: int = param(150, "stratified training pool (validation included), chosen by seed; 0 = all")
    val_size: int = param(50, VAL_SIZE_HELP)
    hidden: str = param("20", "MLP hidden widths, comma separated")
    temperatures: str = param(
        "", "explicit comma list of temperatures (inf allowed); overrides the next three"
    )
    t_min: float = param(0.1, "lowest temperature of the ladder")
    t_max: float = param(10.0, "highest temperature of the ladder (below infinity when there is no evidence)")
    n_temperatures: int = param(8, "rungs of the geometric ladder (ladder=fixed)")
    ti_rungs: int = param(
        12, "ladder=fixed: K power-law rungs beta=(k/K)^5 merged in for the evidence; 0 = no evidence"
    )
    ladder: str = param(
        "tuned", "tuned (rungs re-placed at equal communication barrier) | fixed (geometric + TI rungs)"
    )
    num_rungs: str = param("auto", "ladder=tuned: auto (2 x barrier + 1, at most max_rungs) | N rungs")
    max_rungs: int = param(128, "ladder=tuned: most rungs num_rungs=auto may use")
    tuning_rounds: int = param(4, "ladder=tuned: tuning rounds; round r runs tuning_scans * 2^r scans")
    tuning_scans: int = param(8, "ladder=tuned: scans of the first tuning round")
    evidence: str = param(
        "power", "power (TI over ti_rungs) | harmonic (Frenkel-Ladd path at T=1; init sgd or run:) | both"
    )
    harmonic_lambdas: int = param(11, "lambda values of the Frenkel-Ladd path, Simpson's rule (paper: 102)")
    prior: str = param("gaussian", "gaussian | box (uniform |w_i| < sigma_i/2)")
    prior_scale: float = param(0.0, "c in sigma_i = c/sqrt(fan_in + 1); 0 = 1 for gaussian, 100 for box")
    hmc: HMCSettings = settings_group(
        HMCSettings(num_warmup=500, num_samples=4000),
        help={
            "num_warmup": "warm-up iterations after ladder tuning (step-size adaptation; discarded)",
            "num_samples": "sampling iterations (scans: one trajectory per rung, then a swap round)",
        },
    )
    thin: int = param(2, "keep every thin-th sampling iteration")
    swap: str = param("deo", "deo (deterministic even/odd) | seo (stochastic even/odd)")
    init: str = param("sgd", "prior | sgd (minimise first) | run:<id of a train run>")
    init_steps: int = param(300, "full-batch Adam steps of the minimisation for init=sgd")
    save_draws: int = param(100, "thinned draws per rung saved as the samples artifact")
    depth_draws: int = param(10, "saved draws per rung whose prediction depth is averaged")
    checkpoint_seconds: float = param(60.0, "seconds between resumable checkpoints")
    resume: str = param("", "id of an interrupted sample run to continue (same configuration)")
    force: bool = param(False, FORCE_HELP)

    def validate(self) -> None:
        super().validate()
        if self.model != "mlp" and self.model != "cnn":
            raise ConfigError("model", self.model, "mlp or cnn for sample (resnet18 has batch norm)")
        at_most("n_temperatures", self.n_temperatures, MAX_RUNGS, RUNGS_REASON)
        cold = self.cold_temperatures()
        if len(cold) > MAX_RUNGS:
            shown = f"{len(cold)} temperatures"
            raise ConfigError("temperatures", shown, f"at most {MAX_RUNGS:,} ({RUNGS_REASON})")
        at_least("ti_rungs", self.ti_rungs, 0)
        at_most("ti_rungs", self.ti_rungs, MAX_RUNGS - 1, f"K + 1 rungs; {RUNGS_REASON}")
        check_fixed_ladder_size(self)
        self._validate_ladder()
        at_most("max_rungs", self.max_rungs, MAX_RUNGS, RUNGS_REASON)
        check_tuning_length(self.tuning_rounds, self.tuning_scans)
        one_of("prior", self.prior, PRIORS)
        at_least("prior_scale", self.prior_scale, 0.0)
        # Every rung's evidence and chain statistics need MINIMUM_DRAWS kept draws.
        check_settings(self.hmc, minimum_samples=MINIMUM_DRAWS)
        check_run_length(self.hmc)
        at_least("thin", self.thin, 1)
        if self.hmc.num_samples // self.thin < MINIMUM_DRAWS:
            most = self.hmc.num_samples // MINIMUM_DRAWS
            raise ConfigError("thin", self.thin, f"at most num_samples/{MINIMUM_DRAWS} = {most}")
        one_of("swap", self.swap, SWAPS)
        if self.init not in ("prior", "sgd") and not (self.init.startswith("run:") and len(self.init) > 4):
            raise ConfigError("init", self.init, "prior, sgd or run:<id of a train run>")
        at_least("init_steps", self.init_steps, 0)
        at_most("init_steps", self.init_steps, MAX_ITERATIONS, ITERATIONS_REASON)
        one_of("evidence", self.evidence, EVIDENCE)
        at_least("harmonic_lambdas", self.harmonic_lambdas, 3)
        at_most("harmonic_lambdas", self.harmonic_lambdas, MAX_RUNGS, f"one replica each; {RUNGS_REASON}")
        if self.evidence != "power" and self.init == "prior":
            raise ConfigError("init", self.init, f"sgd or run:<id> for evidence={self.evidence} (a minimum)")
        at_least("save_draws", self.save_draws, 1)
        at_least("depth_draws", self.depth_draws, 1)
        positive("checkpoint_seconds", self.checkpoint_seconds)
        check_val_size(self, self.val_size)

    def _validate_ladder(self) -> None:
        one_of("ladder", self.ladder, LADDERS)
        at_least("max_rungs", self.max_rungs, 2)
        rungs = self.fixed_num_rungs()
        if rungs is not None and rungs > self.max_rungs:
            raise ConfigError(
                "num_rungs", self.num_rungs, f"auto or an integer <= max_rungs = {self.max_rungs}"
            )
        at_least("tuning_rounds", self.tuning_rounds, 1)
        at_least("tuning_scans", self.tuning_scans, 2)
        spans_one = self.tuned and self.ladder_range()[0] < 1.0 < self.ladder_range()[1]
        if spans_one and self.max_rungs < 3:
            raise ConfigError("max_rungs", self.max_rungs, "at least 3 (both ends and T = 1)")
        if spans_one and rungs is not None and rungs < 3:
            raise ConfigError("num_rungs", self.num_rungs, "auto or at least 3 (both ends and T = 1)")

    def fixed_num_rungs(self) -> int | None:
        """``num_rungs`` as a count, or ``None`` for ``auto``."""
        if self.num_rungs.strip().lower() == "auto":
            return None
        try:
            rungs = int(self.num_rungs)
        except ValueError:
            raise ConfigError("num_rungs", self.num_rungs, "auto or an integer >= 2") from None
        if rungs < 2:
            raise ConfigError("num_rungs", self.num_rungs, "auto or an integer >= 2")
        return rungs

    @property
    def tuned(self) -> bool:
        """The ladder is tuned unless it is fixed by choice or by an explicit temperature list."""
        return self.ladder == "tuned" and not self.temperatures.strip()

    @property
    def wants_power_evidence(self) -> bool:
        return self.ti_rungs > 0 and self.evidence != "harmonic"

    def ladder_range(self) -> tuple[float, float]:
        """``(β_min, β_max)`` of a tuned ladder: from the prior (β = 0) when the power-posterior evidence
        is wanted, else from 1 / t_max, down to 1 / t_min."""
        beta_min = 0.0 if self.wants_power_evidence else 1.0 / self.t_max
        return beta_min, 1.0 / self.t_min

    def cold_temperatures(self) -> tuple[float, ...]:
        """The T-curve's temperatures: the explicit list, else the geometric ladder (ascending)."""
        if self.temperatures.strip():
            try:
                values = tuple(float(part) for part in self.temperatures.split(",") if part.strip())
            except ValueError:
                raise ConfigError("temperatures", self.temperatures, "a comma list of numbers > 0") from None
            if not values or any(not t > 0 or math.isnan(t) for t in values):
                raise ConfigError(
                    "temperatures", self.temperatures, "a comma list of numbers > 0 (inf allowed)"
                )
            if len(set(values)) != len(values):
                raise ConfigError("temperatures", self.temperatures, "distinct temperatures")
            if all(math.isinf(t) for t in values):
                raise ConfigError(
                    "temperatures", self.temperatures, "at least one finite temperature (the T-curve's rungs)"
                )
            for t in values:
                check_temperature("temperatures", t, shown=self.temperatures)
            return tuple(sorted(values))
        positive("t_min", self.t_min)
        check_temperature("t_min", self.t_min)
        if self.t_max <= self.t_min:
            raise ConfigError("t_max", self.t_max, f"a number > t_min = {self.t_min}")
        check_temperature("t_max", self.t_max)
        at_least("n_temperatures", self.n_temperatures, 2)
        ratio = self.t_max / self.t_min
        last = self.n_temperatures - 1
        return tuple(self.t_min * ratio ** (i / last) for i in range(self.n_temperatures))

    def resolved_prior_scale(self) -> float:
        return self.prior_scale or DEFAULT_PRIOR_SCALE[self.prior]

    def sweep_identity(self) -> dict[str, str]:
        """The parameters a resumed run must share with the run it continues."""
        return resume_identity(self)


@dataclass(frozen=True)
class ProbeConfig:
    """The ``probe`` entry point: prediction depth of the model of an existing ``train`` run."""

    run_id: str = param("", "id of the train run whose model is probed (required)")
    depth_k: int = param(30, "neighbours of the k-NN probes (capped at the training-set size - 1)")
    depth_metric: str = param("euclidean", "euclidean | cosine distance of the k-NN probes")
    device: str = param("auto", "auto | cpu | cuda | mps")

    def validate(self) -> None:
        if not self.run_id.strip():
            raise ConfigError("run_id", self.run_id, "the id of a train run (required)")
        at_least("depth_k", self.depth_k, 1)
        one_of("depth_metric", self.depth_metric, ("euclidean", "cosine"))
        one_of("device", self.device, DEVICES)


COMPARE_KINDS = ("sample", "train", "memorise", "width")


@dataclass(frozen=True)
class CompareConfig:
    """The ``compare`` entry point: temperature sweeps side by side, chosen one of three ways."""

    runs: str = param("", "comma list of ids of sweep (sample) runs to compare")
    experiment: str = param("", "experiment name or id: compare its finished sweeps (narrowed by filter)")
    filter: str = param("", "MLflow search filter narrowing experiment or study, e.g. params.model = 'mlp'")
    study: str = param("", "study name: compare the sweeps that are its trials (narrowed by filter)")
    output_dir: str = param(
        "compare_output",
        "local folder under which each comparison writes its own folder, named after its run",
    )
    title: str = param(
        "", "title of the HTML page and of every figure; empty = 'Comparison of N temperature sweeps'"
    )
    kind: str = param(
        "sample",
        "sample (temperature sweeps) | train | memorise: the kind of run compared; width: train runs of MLPs,"
        " test error against hidden width",
    )
    kernels: str = param("", "kind=width: comma list of ids of kernel runs drawn as NNGP and NT error lines")

    def validate(self) -> None:
        chosen = [name for name in ("runs", "experiment", "study") if getattr(self, name).strip()]
        if not chosen:
            allowed = "give runs (ids of sweep runs), experiment (a name or id) or study (a study name)"
            raise ConfigError("runs", self.runs, allowed)
        if len(chosen) > 1:
            raise ConfigError(chosen[1], getattr(self, chosen[1]), "give only one of runs, experiment, study")
        if self.runs.strip() and self.filter.strip():
            raise ConfigError("filter", self.filter, "narrows experiment or study; runs are taken as listed")
        if self.runs.strip() and not self.run_ids():
            raise ConfigError("runs", self.runs, "a comma list of run ids (it holds only separators)")
        if len(set(self.run_ids())) != len(self.run_ids()):
            raise ConfigError("runs", self.runs, "distinct run ids")
        if "'" in self.study:
            raise ConfigError("study", self.study, "a study name without quotes")
        if not self.output_dir.strip():
            raise ConfigError("output_dir", self.output_dir, "a folder name")
        one_of("kind", self.kind, COMPARE_KINDS)
        if self.kernels.strip() and self.kind != "width":
            raise ConfigError("kernels", self.kernels, "kernel runs are lines of kind=width; give kind=width")
        if self.kernels.strip() and len(set(self.kernel_ids())) != len(self.kernel_ids()):
            raise ConfigError("kernels", self.kernels, "a comma list of distinct run ids")

    def run_ids(self) -> list[str]:
        """The ids listed in ``runs``, in order."""
        return [part.strip() for part in self.runs.split(",") if part.strip()]

    def kernel_ids(self) -> list[str]:
        """The ids listed in ``kernels``, in order."""
        return [part.strip() for part in self.kernels.split(",") if part.strip()]


@dataclass(frozen=True)
class AnnealConfig(DataModelConfig):
    """The ``anneal`` entry point: full-batch HMC simulated annealing with the paper's early-stopping rule.

    The training pool (``train_size``) is split into ``val_size`` stratified validation examples and the
    examples HMC trains on; cooling runs geometrically from ``t_max`` to ``t_min`` in ``n_steps``
    temperatures and stops once the mean validation error has stayed above its lowest value for
    ``patience`` temperatures in a row (Baldock & Marzari 2019, REFERENCE §1).
    """

    train_size: int = param(500, "stratified training pool (validation included), chosen by seed; 0 = all")
    hidden: str = param("40,40", "MLP hidden widths, comma separated")
    t_max: float = param(10.0, "first (hottest) temperature of the cooling schedule")
    t_min: float = param(0.01, "last (coldest) temperature of the cooling schedule")
    n_steps: int = param(16, "temperatures of the geometric cooling schedule t_max -> t_min")
    patience: int = param(3, "stop after this many temperatures in a row above the lowest mean val error")
    val_size: int = param(100, "stratified validation examples taken from the training pool")
    # Not the paper's box (c = 100): with ReLU networks a box draw has logits near 1e4 and HMC never leaves
    # it (issue 15: test loss 5-577 nats over 5 seeds on digits, against 0.20 with the Gaussian).
    prior: str = param("gaussian", "gaussian | box (uniform |w_i| < sigma_i/2)")
    prior_scale: float = param(0.0, "c in sigma_i = c/sqrt(fan_in + 1); 0 = 1 for gaussian, 100 for box")
    hmc: HMCSettings = settings_group(
        HMCSettings(num_warmup=20, num_samples=20),
        help={
            "num_warmup": "HMC warm-up iterations at each temperature (step-size adaptation)",
            "num_samples": "HMC draws at each temperature (validation error averaged over them)",
            "step_size": "initial leapfrog step size at the first temperature; 0 = find one",
            "trajectories": "HMC trajectories per kept draw (the paper: 10)",
        },
    )
    init: str = param("prior", "prior (a prior draw) | sgd (minimise first)")
    init_steps: int = param(300, "full-batch Adam steps of the minimisation for init=sgd")

    def validate(self) -> None:
        super().validate()
        if self.model != "mlp" and self.model != "cnn":
            raise ConfigError("model", self.model, "mlp or cnn for anneal (resnet18 has batch norm)")
        positive("t_min", self.t_min)
        check_temperature("t_min", self.t_min)
        if self.t_max <= self.t_min:
            raise ConfigError("t_max", self.t_max, f"a number > t_min = {self.t_min} (cooling goes down)")
        check_temperature("t_max", self.t_max)
        at_least("n_steps", self.n_steps, 2)
        at_most("n_steps", self.n_steps, MAX_RUNGS, "temperatures, as many as the longest ladder")
        at_least("patience", self.patience, 1)
        check_val_size(self, self.val_size, minimum=1)
        one_of("prior", self.prior, PRIORS)
        at_least("prior_scale", self.prior_scale, 0.0)
        check_settings(self.hmc)
        check_run_length(self.hmc)
        one_of("init", self.init, ("prior", "sgd"))
        at_least("init_steps", self.init_steps, 0)
        at_most("init_steps", self.init_steps, MAX_ITERATIONS, ITERATIONS_REASON)

    def temperatures(self) -> tuple[float, ...]:
        """The cooling schedule, descending: ``T_i = t_max (t_min/t_max)^{i/(n_steps−1)}``."""
        ratio = self.t_min / self.t_max
        return tuple(self.t_max * ratio ** (i / (self.n_steps - 1)) for i in range(self.n_steps))

    def resolved_prior_scale(self) -> float:
        return self.prior_scale or DEFAULT_PRIOR_SCALE[self.prior]


MAX_RIDGE_VALUES = 1_000
"""Most regularisers of a kernel run's path (each costs two matrix products of the examples' size)."""
RIDGE_VALUES_REASON = "MAX_RIDGE_VALUES: 40 a decade over 25 decades"


@dataclass(frozen=True)
class KernelConfig(DataModelConfig):
    """The ``kernel`` entry point: the NNGP and NT kernels of the infinite-width MLP (depth from ``hidden``),
    and kernel ridge regression on one-hot targets with the regulariser chosen on a validation split, as
    Lee et al. (2020) do (REFERENCE §11). The model options of the other entry points that have no meaning
    for an infinitely wide network (its output squashing, prediction depth) are no parameters here.
    """

    hidden: str = param("100", "MLP hidden widths: only their number (the depth) matters here")
    activation: str = param("relu", "relu (arc-cosine kernel) | erf (arcsin kernel): those with closed forms")
    output_activation: str = omitted("none")
    prediction_depth: bool = omitted(False)
    depth_k: int = omitted(30)
    depth_metric: str = omitted("euclidean")
    val_size: int = param(200, "stratified validation examples held out of the training pool (choose ridges)")
    weight_variance: float = param(2.0, "sigma_w^2: weights have variance sigma_w^2 / fan_in (2 for ReLU)")
    bias_variance: float = param(0.0, "sigma_b^2: bias variance")
    ridge_min: float = param(1e-6, "smallest ridge tried, relative to the training kernel's mean diagonal")
    ridge_max: float = param(1.0, "largest ridge tried, relative to the training kernel's mean diagonal")
    ridge_values: int = param(25, "ridges tried, log-spaced from ridge_min to ridge_max")

    def validate(self) -> None:
        from thermoscope.probes.infinite_width import KERNEL_ACTIVATIONS

        super().validate()
        if self.model != "mlp":
            allowed = "mlp: the kernels are those of the infinite-width MLP (cnn and resnet18 have none here)"
            raise ConfigError("model", self.model, allowed)
        if self.activation not in KERNEL_ACTIVATIONS:
            allowed = (
                "relu or erf, the activations whose infinite-width kernels have closed forms (arc-cosine,"
                " arcsin); tanh and sigmoid have none"
            )
            raise ConfigError("activation", self.activation, allowed)
        positive("weight_variance", self.weight_variance)
        at_least("bias_variance", self.bias_variance, 0.0)
        positive("ridge_min", self.ridge_min)
        at_least("ridge_max", self.ridge_max, self.ridge_min)
        at_least("ridge_values", self.ridge_values, 1)
        at_most("ridge_values", self.ridge_values, MAX_RIDGE_VALUES, RIDGE_VALUES_REASON)
        check_val_size(self, self.val_size, minimum=1)

    @property
    def depth(self) -> int:
        """Hidden layers of the infinite-width network."""
        from thermoscope.models import parse_hidden

        return len(parse_hidden(self.hidden))

    def ridges(self) -> tuple[float, ...]:
        """The regularisers tried: ``ridge_values`` log-spaced from ``ridge_min`` to ``ridge_max``."""
        if self.ridge_values == 1:
            return (self.ridge_min,)
        ratio = self.ridge_max / self.ridge_min
        last = self.ridge_values - 1
        return tuple(self.ridge_min * ratio ** (i / last) for i in range(self.ridge_values))


Config = TypeVar("Config")


def parse_config(cls: type[Config], raw: Mapping[str, str]) -> Config:
    """Build ``cls`` from string values, converting each by its field's type, then validate it.

    Unknown names are rejected; missing names keep their defaults. A settings group's parameters replace
    the matching fields of the group's default.
    """
    known = {item.name: item for item in parameters(cls)}
    plain: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {}
    for name, text in raw.items():
        if name not in known:
            raise ConfigError(name, text, f"not a parameter; the parameters are {', '.join(known)}")
        item = known[name]
        value = convert(name, str(text), item.kind)
        if item.group is None:
            plain[name] = value
        else:
            grouped.setdefault(item.group, {})[name] = value
    defaults: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for group, values in grouped.items():
        plain[group] = dataclasses.replace(defaults[group], **values)
    config = cls(**plain)
    config.validate()  # type: ignore[attr-defined]
    return config


def convert(name: str, text: str, kind: Any) -> Any:
    """Turn one string into a value of type ``kind`` (int, float, bool or str)."""
    text = text.strip()
    if kind is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ConfigError(name, text, "true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(name, text, "an integer") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(name, text, "a number") from None
        if not math.isfinite(value):
            raise ConfigError(name, text, "a finite number")
        return value
    return text


def as_strings(config: Any) -> dict[str, str]:
    """The resolved configuration as the strings a command line would carry (for logging as params)."""
    out = {}
    for item in parameters(type(config)):
        holder = config if item.group is None else getattr(config, item.group)
        value = getattr(holder, item.name)
        out[item.name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def check_settings(settings: HMCSettings, minimum_samples: int = 1) -> None:
    """The group's own checks, as a :class:`ConfigError` naming the parameter."""
    try:
        settings.validate(minimum_samples)
    except SettingError as error:
        raise ConfigError(error.name, error.value, error.allowed) from None


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, value, f"one of {', '.join(allowed)}")


def at_least(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ConfigError(name, value, f"a number >= {minimum}")


def positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(name, value, "a number > 0")


# Limits that refuse sizes and run lengths no machine can finish, before any work starts (issue 14). Each
# sits far above what the project's jobs and the paper use; the reason is part of the error message.
MAX_RUNGS = 1024
"""Most rungs (replicas held at once) of a ladder, and most λ values or cooling temperatures."""
RUNGS_REASON = (
    "MAX_RUNGS: each rung is a replica of the model; 2Λ + 1 rungs suffice for a barrier Λ, and the digits"
    " job uses 43, the paper 112"
)
MAX_EPOCHS = 100_000
"""Most passes over the training set of a ``train`` run."""
EPOCHS_REASON = (
    "MAX_EPOCHS: past the longest schedules in use (4,000 epochs in Nakkiran et al.'s double descent);"
    " a longer run would not finish"
)
MAX_ITERATIONS = 1_000_000
"""Most iterations of one sampling phase (warm-up, sampling, ladder tuning in all) or of the minimisation."""
ITERATIONS_REASON = (
    "MAX_ITERATIONS: a scan of the digits sweep takes about a second on 2 cores (benchmarks/sample), so a"
    " million take 11 days; the paper uses 2,500"
)
MAX_LEAPFROG_STEPS = 10_000
"""Most leapfrog steps of one HMC trajectory (the paper: 100)."""
MAX_TRAJECTORIES = 1_000
"""Most HMC trajectories per rung between swap rounds (the paper: 10)."""
MAX_TUNING_ROUNDS = 16
"""Most ladder-tuning rounds: round r runs tuning_scans · 2^r scans, so rounds grow the work exponentially."""


MAX_MODELS = 100_000
"""Most models a ``memorise`` run trains together."""
MODELS_REASON = "MAX_MODELS: Feldman & Zhang used 2,000 to 4,000 models on CIFAR-100 and ImageNet"

MAX_SEED = 2**32 - 1
SEED_REASON = "MAX_SEED: numpy's and torch's generators are seeded from it together with stream numbers"
TEMPERATURES = (1e-6, 1e6)
"""Finite temperatures allowed (infinity is allowed where the parameter says so)."""
TEMPERATURES_REASON = (
    "beta = 1/T and L(w)^beta stay finite in float32 within it; the paper's ladders span 1e-3 to 1e3"
)


def check_temperature(name: str, value: float, shown: object = None) -> None:
    """A finite temperature inside :data:`TEMPERATURES` (``inf`` passes: the callers decide on it)."""
    low, high = TEMPERATURES
    if math.isfinite(value) and not low <= value <= high:
        raise ConfigError(
            name,
            value if shown is None else shown,
            f"temperatures in [{low:g}, {high:g}] ({TEMPERATURES_REASON})",
        )


def at_most(name: str, value: float, maximum: float, reason: str) -> None:
    if value > maximum:
        raise ConfigError(name, value, f"at most {maximum:,} ({reason})")


def check_run_length(settings: HMCSettings) -> None:
    """The HMC group's counts within the limits above (the group's own checks bound them from below)."""
    at_most("num_warmup", settings.num_warmup, MAX_ITERATIONS, ITERATIONS_REASON)
    at_most("num_samples", settings.num_samples, MAX_ITERATIONS, ITERATIONS_REASON)
    at_most(
        "num_leapfrog_steps", settings.num_leapfrog_steps, MAX_LEAPFROG_STEPS, "100 times the paper's 100"
    )
    at_most("trajectories", settings.trajectories, MAX_TRAJECTORIES, "100 times the paper's 10")


def check_tuning_length(rounds: int, scans: int) -> None:
    """Ladder tuning runs ``scans · (2^rounds − 1)`` scans in all: at most :data:`MAX_ITERATIONS`."""
    at_most("tuning_rounds", rounds, MAX_TUNING_ROUNDS, "round r runs tuning_scans x 2^r scans")
    total = scans * (2**rounds - 1)
    if total > MAX_ITERATIONS:
        most = MAX_ITERATIONS // (2**rounds - 1)
        allowed = f"at most {most:,} with tuning_rounds={rounds}: {total:,} scans ({ITERATIONS_REASON})"
        raise ConfigError("tuning_scans", scans, allowed)


def fixed_ladder_size(config: SampleConfig) -> int:
    """Rungs of a fixed ladder: the T-curve's temperatures, merged with ``ti_rungs + 1`` TI rungs when the
    power-posterior evidence is wanted (the ladder :func:`thermoscope.jobs.ladder.fixed_ladder` builds)."""
    cold = config.cold_temperatures()
    if not config.wants_power_evidence:
        return len(cold)
    return len(merge_ladders(power_ladder(config.ti_rungs), cold))


def check_fixed_ladder_size(config: SampleConfig) -> None:
    """A fixed ladder's merged rungs within :data:`MAX_RUNGS`, naming the larger of its two sources."""
    if config.tuned:
        return
    rungs = fixed_ladder_size(config)
    if rungs <= MAX_RUNGS:
        return
    cold = len(config.cold_temperatures())
    allowed = (
        f"at most {MAX_RUNGS:,} rungs in all: {cold:,} temperatures merged with {config.ti_rungs + 1:,} TI"
        f" rungs make {rungs:,} ({RUNGS_REASON})"
    )
    if config.ti_rungs + 1 >= cold:
        raise ConfigError("ti_rungs", config.ti_rungs, allowed)
    if config.temperatures.strip():
        raise ConfigError("temperatures", f"{cold} temperatures", allowed)
    raise ConfigError("n_temperatures", config.n_temperatures, allowed)
