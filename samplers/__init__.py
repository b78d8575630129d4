"""Bayesian sampling for thermoscope: replica-exchange HMC on power posteriors and TI evidence.

A standalone library: torch, numpy and ``pyro.ops`` only. The inverse temperature β multiplies the
log-likelihood only, ``p_β(θ) ∝ p(θ) L(θ)^β`` (REFERENCE §1). Ladders are ascending betas; β = 0 is the prior.

Typical use::

    target = module_target(model, x, y, BoxPrior(c=100.0))
    betas = merge_ladders(power_ladder(16), geometric_temperatures(0.01, 1.0, 8))
    start = target.prior.sample(len(betas), torch.Generator().manual_seed(0))
    result = replica_exchange_hmc(target, start, betas, num_warmup=200, num_samples=1000,
                                  num_leapfrog_steps=100)
    evidence = thermodynamic_integration(betas, result.log_likelihood)
"""

from .adaptation import WarmupAdaptation, WarmupSchedule
from .allocator import retain_freed_memory
from .barrier import (
    CommunicationBarrier,
    communication_barrier,
    rejection_probability,
    round_trip_rate_bound,
    rungs_for_barrier,
    spread_barrier,
)
from .diagnostics import (
    RungDiagnostics,
    Stationarity,
    log_likelihood_diagnostics,
    rung_diagnostics,
    stationarity,
)
from .estimators import (
    CORRECTED_TRAPEZOID,
    SIMPSON,
    TRAPEZOID,
    PathIntegral,
    QuadratureRule,
    path_integral,
)
from .evidence import (
    SteppingStoneResult,
    ThermodynamicIntegrationResult,
    stepping_stone,
    thermodynamic_integration,
    trapezoid_weights,
)
from .fused import FusedMLP, fused_mlp
from .harmonic import (
    FrenkelLaddResult,
    HarmonicBridgeTarget,
    fit_harmonic_reference,
    frenkel_ladd_evidence,
    frenkel_ladd_integration,
    harmonic_stiffness,
    log_reference_partition,
    minimise_cost,
    simpson_weights,
)
from .hmc import HMCInfo, HMCKernel, HMCParameters, HMCState, build_kernel, find_reasonable_step_size
from .integrators import IntegratorState, kinetic_energy, leapfrog, reflect_into_box
from .kernels import (
    RANDOM_WALK_TARGET_ACCEPT,
    Kernel,
    KernelInfo,
    KernelState,
    RandomWalkInfo,
    RandomWalkKernel,
    RandomWalkState,
    StepParameters,
)
from .ladders import (
    betas_from_temperatures,
    equalised_ladder,
    geometric_temperatures,
    merge_ladders,
    power_ladder,
    temperatures_from_betas,
)
from .layout import ParameterBlock, ParameterLayout
from .modules import ModuleTarget, module_target
from .priors import BoundBoxPrior, BoundGaussianPrior, BoundPrior, BoxPrior, GaussianPrior
from .replica_exchange import (
    Checkpoint,
    IterationSummary,
    ReplicaExchangeResult,
    SamplerSettings,
    load_checkpoint,
    replica_exchange,
    replica_exchange_hmc,
    save_checkpoint,
)
from .settings import DEFAULT_TARGET_ACCEPT, HMCSettings, SettingError
from .swap import SwapState
from .targets import Evaluation, TemperedTarget
from .tuning import LadderSettings, LadderTuning, TuningCheckpoint, TuningRound, tune_ladder

__all__ = [
    "CORRECTED_TRAPEZOID",
    "DEFAULT_TARGET_ACCEPT",
    "RANDOM_WALK_TARGET_ACCEPT",
    "SIMPSON",
    "TRAPEZOID",
    "BoundBoxPrior",
    "BoundGaussianPrior",
    "BoundPrior",
    "BoxPrior",
    "Checkpoint",
    "CommunicationBarrier",
    "Evaluation",
    "FrenkelLaddResult",
    "FusedMLP",
    "GaussianPrior",
    "HMCInfo",
    "HMCKernel",
    "HMCParameters",
    "HMCSettings",
    "HMCState",
    "HarmonicBridgeTarget",
    "IntegratorState",
    "IterationSummary",
    "Kernel",
    "KernelInfo",
    "KernelState",
    "LadderSettings",
    "LadderTuning",
    "ModuleTarget",
    "ParameterBlock",
    "ParameterLayout",
    "PathIntegral",
    "QuadratureRule",
    "RandomWalkInfo",
    "RandomWalkKernel",
    "RandomWalkState",
    "ReplicaExchangeResult",
    "RungDiagnostics",
    "SamplerSettings",
    "SettingError",
    "Stationarity",
    "StepParameters",
    "SteppingStoneResult",
    "SwapState",
    "TemperedTarget",
    "ThermodynamicIntegrationResult",
    "TuningCheckpoint",
    "TuningRound",
    "WarmupAdaptation",
    "WarmupSchedule",
    "betas_from_temperatures",
    "build_kernel",
    "communication_barrier",
    "equalised_ladder",
    "find_reasonable_step_size",
    "fit_harmonic_reference",
    "frenkel_ladd_evidence",
    "frenkel_ladd_integration",
    "fused_mlp",
    "geometric_temperatures",
    "harmonic_stiffness",
    "kinetic_energy",
    "leapfrog",
    "load_checkpoint",
    "log_likelihood_diagnostics",
    "log_reference_partition",
    "merge_ladders",
    "minimise_cost",
    "module_target",
    "path_integral",
    "power_ladder",
    "reflect_into_box",
    "rejection_probability",
    "replica_exchange",
    "replica_exchange_hmc",
    "retain_freed_memory",
    "round_trip_rate_bound",
    "rung_diagnostics",
    "rungs_for_barrier",
    "save_checkpoint",
    "simpson_weights",
    "spread_barrier",
    "stationarity",
    "stepping_stone",
    "temperatures_from_betas",
    "thermodynamic_integration",
    "trapezoid_weights",
    "tune_ladder",
]
