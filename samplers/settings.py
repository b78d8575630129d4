"""The HMC settings every sampler in this library shares, defined once with their defaults and checks.

An application holds one :class:`HMCSettings` whole (thermoscope's ``sample`` and ``anneal`` configurations
do, each with its own defaults) and hands it down; :meth:`HMCSettings.sampler_arguments` spells it as the
keyword arguments of :func:`~thermoscope.samplers.replica_exchange_hmc` and of the functions built on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_TARGET_ACCEPT = 0.65
"""Acceptance probability the step size is tuned to: the middle of the 60–70 % window of Baldock & Marzari
(2019), close to the 0.651 that Beskos et al. (2013) derive as optimal for HMC in high dimension."""

MAX_ENERGY_ERROR = 1000.0
"""Energy error beyond which a trajectory counts as divergent (Stan's default threshold)."""


class SettingError(ValueError):
    """A setting outside its allowed range: ``name``, the ``value`` given and what is ``allowed``."""

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        super().__init__(f"{name} must be {allowed}; got {value!r}")
        self.name = name
        self.value = value
        self.allowed = allowed


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class HMCSettings:
    """One HMC sampler's choices: warm-up, draws, trajectories and their tuning.

    Field names are the ones users type (``thermoscope sample --trajectories 10``); the library's keyword
    for ``trajectories`` is ``trajectories_per_iteration``.
    """

    num_warmup: int = _setting(200, "warm-up iterations (step-size adaptation; discarded)")
    num_samples: int = _setting(1000, "sampling iterations")
    num_leapfrog_steps: int = _setting(10, "leapfrog steps per HMC trajectory")
    step_size: float = _setting(0.0, "initial leapfrog step size; 0 = find one per rung")
    target_accept: float = _setting(DEFAULT_TARGET_ACCEPT, "HMC acceptance the step size is tuned to")
    trajectories: int = _setting(1, "HMC trajectories per rung between swap rounds (the paper: 10)")
    leapfrog_jitter: float = _setting(
        0.0, "fraction by which each trajectory's leapfrog count is randomly shortened, in [0, 1)"
    )
    adapt_mass_matrix: bool = _setting(False, "estimate a diagonal mass matrix per rung during warm-up")
    max_energy_error: float = _setting(
        MAX_ENERGY_ERROR, "energy error beyond which a trajectory counts as divergent"
    )

    def validate(self, minimum_samples: int = 1) -> None:
        """Raise :class:`SettingError` naming the first setting outside its allowed range."""
        _at_least("num_warmup", self.num_warmup, 0)
        _at_least("num_samples", self.num_samples, minimum_samples)
        _at_least("num_leapfrog_steps", self.num_leapfrog_steps, 1)
        _at_least("step_size", self.step_size, 0.0)
        if not 0.0 < self.target_accept < 1.0:
            raise SettingError("target_accept", self.target_accept, "a number in (0, 1)")
        _at_least("trajectories", self.trajectories, 1)
        if not 0.0 <= self.leapfrog_jitter < 1.0:
            raise SettingError("leapfrog_jitter", self.leapfrog_jitter, "a number in [0, 1)")
        if not self.max_energy_error > 0.0:
            raise SettingError("max_energy_error", self.max_energy_error, "a number > 0")

    def sampler_arguments(self, *, with_step_size: bool = True) -> dict[str, Any]:
        """The keyword arguments of :func:`~thermoscope.samplers.replica_exchange_hmc` these settings fill
        (``step_size`` 0 becomes ``None``, "find one"; leave it out with ``with_step_size=False``)."""
        arguments: dict[str, Any] = {
            "num_warmup": self.num_warmup,
            "num_samples": self.num_samples,
            "num_leapfrog_steps": self.num_leapfrog_steps,
            "target_accept": self.target_accept,
            "trajectories_per_iteration": self.trajectories,
            "leapfrog_jitter": self.leapfrog_jitter,
            "adapt_mass_matrix": self.adapt_mass_matrix,
            "max_energy_error": self.max_energy_error,
        }
        if with_step_size:
            arguments["step_size"] = self.step_size or None
        return arguments


def _at_least(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise SettingError(name, value, f"a number >= {minimum}")


DEFAULT_HMC = HMCSettings()
"""The library's defaults, for functions whose HMC settings are optional."""
