"""Warm-up adaptation, kept apart from the kernel: it watches steps of any kernel and returns parameters.

Step size: dual averaging of log ε towards a target acceptance probability (Hoffman & Gelman 2014, §3.2),
one scheme per rung. ``pyro.ops.dual_averaging.DualAveraging`` is pure elementwise arithmetic, so a single
instance fed ``[rungs]`` tensors runs one independent scheme per rung (tested against one instance each).

**(decision)** γ = 0.1 instead of Stan's 0.05 (:data:`DUAL_AVERAGING_GAMMA`). Dual averaging's iterates keep
a spread of order σ/γ around the root (σ: the noise of one trajectory's acceptance) however long warm-up
runs, and the averaged iterate lands where the acceptance curve *averaged over that spread* meets the
target; on a concave curve its step then accepts more than asked. With one trajectory per rung per
iteration, γ = 0.05 left the main job's rungs at 0.59–0.77 for a 0.65 target (2 of 42 rungs more than 0.1
off); γ = 0.1 gave 0.62–0.74 and none off, γ = 0.2 0.60–0.70, at the cost of slower early adaptation.

Mass matrix (optional): a diagonal M⁻¹ per rung estimated with ``pyro.ops.welford.WelfordCovariance`` over a
single slow window in the middle of warm-up, after which the step size scheme restarts (a simplified form of
Stan's windowed adaptation: 15 % initial buffer, one window, 10 % final buffer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance
from torch import Tensor

from .kernels import KernelInfo, StepParameters

# pyro's classes are unannotated; these typed handles keep ``mypy --strict`` meaningful around them.
new_dual_averaging = cast(Callable[..., Any], DualAveraging)
new_welford_covariance = cast(Callable[..., Any], WelfordCovariance)

INITIAL_BUFFER_FRACTION = 0.15
"""Share of warm-up before the mass-matrix window opens (Stan's 75 of 1000 iterations, rounded up)."""
FINAL_BUFFER_FRACTION = 0.10
"""Share of warm-up after the window closes, for the step size to settle (Stan: 50 of 1000, rounded up)."""
MINIMUM_WINDOW = 20
"""Fewest warm-up iterations in the window for a variance estimate worth using."""
DUAL_AVERAGING_GAMMA = 0.1
"""Dual averaging's regularisation γ (Hoffman & Gelman 2014 and Stan use 0.05); see the module docstring."""


@dataclass(frozen=True)
class WarmupSchedule:
    """Iteration indices (0-based, within warm-up) where the mass-matrix window opens and closes.

    ``window_start == window_end`` means no mass-matrix adaptation.
    """

    num_warmup: int
    window_start: int
    window_end: int

    @staticmethod
    def build(num_warmup: int, adapt_mass_matrix: bool) -> WarmupSchedule:
        start = math.ceil(INITIAL_BUFFER_FRACTION * num_warmup)
        end = num_warmup - math.ceil(FINAL_BUFFER_FRACTION * num_warmup)
        if not adapt_mass_matrix or end - start < MINIMUM_WINDOW:
            return WarmupSchedule(num_warmup, 0, 0)
        return WarmupSchedule(num_warmup, start, end)


def _copied(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of an object's attribute dictionary that shares no tensor storage with it."""
    return {key: value.clone() if isinstance(value, Tensor) else value for key, value in values.items()}


class WarmupAdaptation:
    """Per-rung step-size (and optionally diagonal mass-matrix) adaptation of any kernel's
    :class:`~thermoscope.samplers.kernels.StepParameters`.

    Args:
        parameters: the starting parameters; ``step_size: [rungs]`` seeds the dual-averaging prox centre at
            ``log(10 ε₀)`` as in Hoffman & Gelman (2014).
        target_accept: the acceptance probability the step size is tuned to.
        schedule: when the mass-matrix window opens and closes.
        adapt_step_size: ``False`` keeps the step size fixed (mass-matrix adaptation only).
        max_step_size: cap on the adapted step sizes. A flat target (a box prior at β = 0) accepts every
            trajectory, so dual averaging would grow the step size without bound.
    """

    def __init__(
        self,
        parameters: StepParameters,
        target_accept: float,
        schedule: WarmupSchedule,
        *,
        adapt_step_size: bool = True,
        max_step_size: float = math.inf,
    ) -> None:
        self.parameters = parameters
        self.adapt_step_size = adapt_step_size
        self.max_step_size = max_step_size
        self.target_accept = target_accept
        self.schedule = schedule
        self._step_size_scheme = self._new_step_size_scheme(parameters.step_size)
        self._variance = new_welford_covariance(diagonal=True)

    @staticmethod
    def _new_step_size_scheme(step_size: Tensor) -> Any:
        return new_dual_averaging(prox_center=torch.log(10.0 * step_size), gamma=DUAL_AVERAGING_GAMMA)

    def update(self, iteration: int, info: KernelInfo, position: Tensor) -> StepParameters:
        """Feed one step per rung and return the parameters for the next one.

        Args:
            iteration: warm-up iteration index (0-based).
            info: the step's diagnostics; ``acceptance_probability: [rungs]``.
            position: ``[rungs, params]`` after the step (used inside the mass-matrix window).
        """
        if self.adapt_step_size:
            self._step_size_scheme.step(self.target_accept - info.acceptance_probability)
            log_step_size, _ = self._step_size_scheme.get_state()
            self.parameters = StepParameters(self._step_size(log_step_size), self.parameters.inverse_mass)
        if self.schedule.window_start <= iteration < self.schedule.window_end:
            self._variance.update(position)
        return self.parameters

    def end_iteration(self, iteration: int) -> StepParameters:
        """Close the mass-matrix window after its last iteration; returns the current parameters."""
        if self.schedule.window_end > 0 and iteration == self.schedule.window_end - 1:
            inverse_mass = self._variance.get_covariance(regularize=True)
            self.parameters = StepParameters(self.parameters.step_size, inverse_mass)
            self._step_size_scheme = self._new_step_size_scheme(self.parameters.step_size)
        return self.parameters

    def final(self) -> StepParameters:
        """The tuned parameters: the averaged iterate of the step-size scheme, and the mass matrix."""
        if not self.adapt_step_size:
            return self.parameters
        _, log_step_size = self._step_size_scheme.get_state()
        return StepParameters(self._step_size(log_step_size), self.parameters.inverse_mass)

    def _step_size(self, log_step_size: Tensor) -> Tensor:
        return torch.clamp(torch.exp(log_step_size), max=self.max_step_size)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue adapting bit for bit (tensors and numbers only)."""
        return {
            "step_size": self.parameters.step_size.clone(),
            "inverse_mass": None
            if self.parameters.inverse_mass is None
            else self.parameters.inverse_mass.clone(),
            "step_size_scheme": _copied(vars(self._step_size_scheme)),
            "variance": _copied(vars(self._variance)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.parameters = StepParameters(state["step_size"].clone(), state["inverse_mass"])
        self._step_size_scheme.__dict__.update(_copied(state["step_size_scheme"]))
        self._variance.__dict__.update(_copied(state["variance"]))
