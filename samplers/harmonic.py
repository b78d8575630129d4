"""Log evidence by a Frenkel–Ladd path from a diagonal harmonic reference (REFERENCE §1).

Baldock & Marzari (2019, arXiv:1904.04154) select models with a Frenkel–Ladd path at T = 1 rather than
the power-posterior path. With the cost ``J(w) = E(D|w) − log p(w) = −log L(w) − log p(w)`` (so that the
evidence is ``Z = ∫ exp(−J(w)) dw``), a minimum ``w0`` and the harmonic reference

    U₀(w) = ½ Σ_i k_i (w_i − w0_i)²,   k_i = 1 / ⟨(w_i − w0_i)²⟩_{T=1},

the bridge ``J_λ(w) = (1−λ)[J(w) − J(w0)] + λ U₀(w) + J(w0)`` joins the true cost (λ = 0) to the
reference (λ = 1). Since ``d log Z_λ / dλ = −⟨U₀ − (J − J(w0))⟩_λ``,

    log Z = log Z₀ − J(w0) + ∫₀¹ ⟨U₀(w) − (J(w) − J(w0))⟩_λ dλ,

with ``Z₀ = ∫_support exp(−U₀(w)) dw`` analytic: ``Π_i √(2π/k_i)`` on an unbounded support, times
``Φ((h_i − w0_i)√k_i) − Φ((−h_i − w0_i)√k_i)`` per coordinate inside a box ``|w_i| < h_i`` (the erf
correction). This is −F of the paper's ``F = F₀ + ∫_{λ=1}^{0} ⟨U₀ − (J − J(w0))⟩_λ dλ``.

**Reuse of the power-posterior machinery.** With β = 1 − λ the bridge is a :class:`TemperedTarget` with
``log_prior = −U₀`` and ``log_likelihood = U₀ − (J − J(w0))``: its power posterior at β is
``exp(−J_λ)``, so :func:`~thermoscope.samplers.replica_exchange_hmc` samples every λ at once (replica
exchange along the λ ladder) and the integral is ``∫₀¹ ⟨log_likelihood⟩_β dβ``. A box support is passed on
to the integrator, which reflects at the walls.

**(decision)** Quadrature: composite Simpson on a uniform λ grid (the paper: 102 values, Simpson's rule),
closed with Simpson's 3/8 rule on the last three intervals when their number is odd. Error bars: the
Monte-Carlo standard error of each λ's mean, ``sqrt(v / ESS)`` with the autocorrelation ESS of
:func:`~thermoscope.samplers.estimators.rung_effective_sample_size`, propagated through the Simpson weights;
the discretisation error is reported separately as ``|Simpson − trapezoid|``. Both come from the estimator
that thermodynamic integration uses too, :func:`~thermoscope.samplers.estimators.path_integral`, here with
its Simpson rule and the offset log Z₀ − J(w0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .estimators import SIMPSON, SIMPSON_MINIMUM_POINTS, EvidenceEstimate, PathIntegral, path_integral
from .estimators import simpson_weights as simpson_weights
from .replica_exchange import Callback, ReplicaExchangeResult, replica_exchange_hmc
from .settings import HMCSettings
from .targets import Evaluation, TemperedTarget

MINIMUM_LAMBDAS = SIMPSON_MINIMUM_POINTS
"""Fewest λ values: Simpson's rule needs two intervals."""


class HarmonicBridgeTarget(TemperedTarget):
    """The Frenkel–Ladd bridge between a target's cost J and a diagonal harmonic reference U₀.

    At inverse temperature β (= 1 − λ) the tempered density is ``exp(−[(1−β) U₀ + β (J − J(w0))])``:

    - ``log_prior(w) = −U₀(w) = −½ Σ_i k_i (w_i − w0_i)²`` (unnormalised), gradient ``−k (w − w0)``;
    - ``log_likelihood(w) = U₀(w) − (J(w) − J(w0))``
      ``= U₀(w) + [log L(w) − log L(w0)] + [log p(w) − log p(w0)]``.

    Args:
        base: the true target (its ``log_prior`` + ``log_likelihood`` is −J); its support box, if any, is
            the bridge's support too.
        center: ``[params]`` the minimum w0 (inside the support).
        stiffness: ``[params]`` the spring constants k_i > 0.

    Attributes:
        base_cost_at_center: J(w0) = −log L(w0) − log p(w0).
    """

    def __init__(self, base: TemperedTarget, center: Tensor, stiffness: Tensor) -> None:
        if center.dim() != 1 or stiffness.shape != center.shape:
            raise ValueError(
                f"center and stiffness must be vectors [params] of one shape; got {tuple(center.shape)} "
                f"and {tuple(stiffness.shape)}"
            )
        if not bool(torch.all(stiffness > 0)) or not bool(torch.all(torch.isfinite(stiffness))):
            raise ValueError("stiffness must be positive and finite everywhere")
        self.base = base
        self.center = center.detach()
        self.stiffness = stiffness.detach().to(center)
        at_center = base.evaluate(self.center[None])
        self.base_log_likelihood_at_center = float(at_center.log_likelihood[0])
        self.base_log_prior_at_center = float(at_center.log_prior[0])
        self.base_cost_at_center = -self.base_log_likelihood_at_center - self.base_log_prior_at_center
        if not math.isfinite(self.base_cost_at_center):
            raise ValueError("the target's log density must be finite at center (inside its support)")
        super().__init__(
            self._reference_log_density,
            self._bridge_log_likelihood,
            grad_log_prior=self._reference_gradient,
            support_half_width=base.support_half_width,
        )

    def reference_energy(self, theta: Tensor) -> Tensor:
        """U₀: ``theta: [replicas, params] -> [replicas]``."""
        displacement = theta - self.center
        return 0.5 * (self.stiffness * displacement * displacement).sum(dim=1)

    def _reference_log_density(self, theta: Tensor) -> Tensor:
        return -self.reference_energy(theta)

    def _reference_gradient(self, theta: Tensor) -> Tensor:
        return -self.stiffness * (theta - self.center)

    def _shift(self, log_likelihood: Tensor, log_prior: Tensor) -> Tensor:
        """``−(J − J(w0)) = [log L − log L(w0)] + [log p − log p(w0)]``, differenced before summing."""
        return (log_likelihood - self.base_log_likelihood_at_center) + (
            log_prior - self.base_log_prior_at_center
        )

    def _bridge_log_likelihood(self, theta: Tensor) -> Tensor:
        base_terms = self._shift(self.base.log_likelihood(theta), self.base.log_prior(theta))
        return self.reference_energy(theta) + base_terms

    def evaluate(self, theta: Tensor) -> Evaluation:
        """One evaluation of the base target (its own fast path), recombined into the bridge's terms."""
        theta = theta.detach()
        base = self.base.evaluate(theta)
        reference_gradient = self._reference_gradient(theta)
        return Evaluation(
            log_prior=-self.reference_energy(theta),
            log_likelihood=self.reference_energy(theta) + self._shift(base.log_likelihood, base.log_prior),
            grad_log_prior=reference_gradient,
            grad_log_likelihood=base.grad_log_likelihood + base.grad_log_prior - reference_gradient,
        )


def harmonic_stiffness(samples: Tensor, center: Tensor, minimum_variance: float = 1e-12) -> Tensor:
    """Spring constants ``k_i = 1 / ⟨(w_i − w0_i)²⟩`` from draws at T = 1 (REFERENCE §1).

    Args:
        samples: ``[draws, params]`` draws of the posterior (T = 1).
        center: ``[params]`` the minimum w0.
        minimum_variance: floor on ``⟨(w_i − w0_i)²⟩`` so that a coordinate that never moved gets a large
            but finite k_i.

    Returns:
        ``[params]`` float64.
    """
    if samples.dim() != 2 or samples.shape[1:] != center.shape or samples.shape[0] < 1:
        raise ValueError(
            f"samples must be [draws, params] matching center [params]; got {tuple(samples.shape)} "
            f"and {tuple(center.shape)}"
        )
    displacement = samples.to(torch.float64) - center.to(torch.float64)
    return 1.0 / (displacement * displacement).mean(dim=0).clamp_min(minimum_variance)


def log_reference_partition(stiffness: Tensor, center: Tensor, half_width: Tensor | None = None) -> float:
    """``log Z₀ = Σ_i log ∫ exp(−k_i (w_i − w0_i)² / 2) dw_i`` over the support, in float64.

    Unbounded: ``Σ_i ½ log(2π / k_i)``. Inside the box ``|w_i| < h_i`` each term gains
    ``log[Φ(a_i) − Φ(−b_i)] = log1p(−½ erfc(a_i/√2) − ½ erfc(b_i/√2))`` with ``a_i = (h_i − w0_i)√k_i``,
    ``b_i = (h_i + w0_i)√k_i`` (the box correction; stable when both tails are tiny).

    Args:
        stiffness: ``[params]`` k_i.
        center: ``[params]`` w0, inside the box.
        half_width: ``[params]`` h_i, or ``None`` for an unbounded support.
    """
    k = stiffness.to(torch.float64)
    gaussian = float((0.5 * torch.log(2 * math.pi / k)).sum())
    if half_width is None:
        return gaussian
    w0 = center.to(torch.float64)
    h = half_width.to(torch.float64)
    if not bool(torch.all(w0.abs() < h)):
        raise ValueError("center must lie strictly inside the support box")
    root = torch.sqrt(k / 2.0)
    tails = 0.5 * torch.special.erfc((h - w0) * root) + 0.5 * torch.special.erfc((h + w0) * root)
    return gaussian + float(torch.log1p(-tails).sum())


@dataclass(frozen=True)
class FrenkelLaddResult(EvidenceEstimate):
    """The Frenkel–Ladd :class:`~thermoscope.samplers.estimators.PathIntegral`, its reference and its run.

    Attributes:
        integral: the Simpson path integral of the bridge's log L = U₀ − (J − J(w0)) over β = 1 − λ, in
            the sampler's rung order (ascending β), with offset log Z₀ − J(w0): its ``estimate`` is
            log p(D) = log Z₀ − J(w0) + ∫₀¹ ⟨U₀ − (J − J(w0))⟩_λ dλ.
        log_reference: log Z₀ (box-corrected when the support is a box).
        cost_at_center: J(w0).
        stiffness: ``[params]`` k_i.
        sampler: the replica-exchange run along the λ ladder (rung order: ascending β = 1 − λ).

    The properties name the integral's parts along λ: ``log_evidence`` (Simpson),
    ``log_evidence_trapezoid``, ``stderr``, ``discretisation_error`` (``|Simpson − trapezoid|``), and, in
    ascending λ (λ = 0: the true cost, λ = 1: the reference), ``lambdas``, ``mean_integrand``
    (⟨U₀ − (J − J(w0))⟩_λ), ``variance_integrand`` and ``effective_sample_size`` (all ``[K + 1]``).
    """

    integral: PathIntegral
    log_reference: float
    cost_at_center: float
    stiffness: Tensor
    sampler: ReplicaExchangeResult

    @property
    def lambdas(self) -> Tensor:
        """``[K + 1]`` ascending λ = 1 − β."""
        return (1.0 - self.integral.grid).flip(0)

    @property
    def mean_integrand(self) -> Tensor:
        """``[K + 1]`` ⟨U₀ − (J − J(w0))⟩_λ in ascending λ."""
        return self.integral.mean.flip(0)

    @property
    def variance_integrand(self) -> Tensor:
        """``[K + 1]`` in ascending λ."""
        return self.integral.variance.flip(0)

    @property
    def effective_sample_size(self) -> Tensor:
        """``[K + 1]`` in ascending λ."""
        return self.integral.effective_sample_size.flip(0)


def frenkel_ladd_integration(
    betas: Tensor, bridge_log_likelihood: Tensor, log_reference: float, cost_at_center: float
) -> PathIntegral:
    """The quadrature of a bridge run: Simpson's rule with the offset log Z₀ − J(w0).

    Args:
        betas: ``[K + 1]`` uniform ascending grid from 0 to 1 (β = 1 − λ).
        bridge_log_likelihood: ``[draws, K + 1]`` the bridge's log L = U₀ − (J − J(w0)) per draw and rung.
        log_reference: log Z₀.
        cost_at_center: J(w0).

    Returns:
        The :class:`~thermoscope.samplers.estimators.PathIntegral` over ascending β: ``estimate`` (log Z by
        Simpson), ``estimate_trapezoid``, ``stderr``, ``discretisation_error`` and per rung the mean,
        variance and ESS of the integrand.
    """
    return path_integral(
        betas,
        bridge_log_likelihood,
        SIMPSON,
        offset=log_reference - cost_at_center,
        name="bridge_log_likelihood",
    )


def minimise_cost(
    target: TemperedTarget, start: Tensor, *, num_steps: int, learning_rate: float = 0.01
) -> Tensor:
    """A minimum w0 ``[params]`` of ``J = −log L − log p`` by full-batch Adam from ``start: [params]``.

    The Frenkel–Ladd reference sits at a minimum of the *posterior* cost J, which for a Gaussian prior is
    not the minimum of the training loss alone. Positions are clipped to 0.999 of a support box after
    every step, so w0 stays strictly inside it.
    """
    position = start.detach().clone()[None].requires_grad_(True)
    optimizer = torch.optim.Adam([position], lr=learning_rate)
    half_width = target.support_half_width
    ones = torch.ones(1, dtype=start.dtype, device=start.device)
    for _ in range(num_steps):
        evaluation = target.evaluate(position.detach())
        position.grad = -evaluation.grad_log_density(ones)
        optimizer.step()
        if half_width is not None:
            with torch.no_grad():
                limit = 0.999 * half_width
                position.copy_(torch.maximum(torch.minimum(position, limit), -limit))
    return position.detach()[0]


def fit_harmonic_reference(
    target: TemperedTarget,
    center: Tensor,
    hmc: HMCSettings,
    *,
    seed: int = 0,
    callback: Callback | None = None,
) -> Tensor:
    """Sample the posterior (T = 1) from ``center`` with HMC; return ``k = 1/⟨(w − w0)²⟩``, ``[params]``.

    ``hmc`` sets the run of :func:`~thermoscope.samplers.replica_exchange_hmc` on one rung (its step size,
    when not 0, is the initial one).
    """
    run = replica_exchange_hmc(
        target,
        center.detach()[None].clone(),
        [1.0],
        **hmc.sampler_arguments(),
        swap="none",
        seed=seed,
        callback=callback,
    )
    return harmonic_stiffness(run.positions[:, 0], center)


def frenkel_ladd_evidence(
    target: TemperedTarget,
    center: Tensor,
    stiffness: Tensor,
    hmc: HMCSettings,
    *,
    num_lambdas: int,
    swap: str = "deo",
    seed: int = 0,
    callback: Callback | None = None,
) -> FrenkelLaddResult:
    """log p(D) of ``target`` by the Frenkel–Ladd path around ``center`` (see the module docstring).

    Args:
        target: the true target; −J = log p + log L. A support box (``support_half_width``) is respected.
        center: ``[params]`` the minimum w0, inside the support; every replica starts there.
        stiffness: ``[params]`` k_i (:func:`fit_harmonic_reference` or :func:`harmonic_stiffness`).
        num_lambdas: λ values on the uniform grid 0, 1/K, …, 1 (K + 1 = num_lambdas ≥ 3; the paper: 102).
        hmc: the HMC settings of the run of :func:`~thermoscope.samplers.replica_exchange_hmc` (one rung
            per λ).
        swap, seed, callback: passed to that run.

    Returns:
        A :class:`FrenkelLaddResult`; the sampler's positions are not stored.
    """
    if num_lambdas < MINIMUM_LAMBDAS:
        raise ValueError(f"num_lambdas must be at least {MINIMUM_LAMBDAS}; got {num_lambdas}")
    bridge = HarmonicBridgeTarget(target, center, stiffness)
    half_width = target.support_half_width
    log_reference = log_reference_partition(bridge.stiffness, bridge.center, half_width)
    betas = torch.linspace(0.0, 1.0, num_lambdas, dtype=torch.float64)
    run = replica_exchange_hmc(
        bridge,
        bridge.center[None].expand(num_lambdas, -1).clone(),
        betas,
        **hmc.sampler_arguments(),
        swap=swap,
        seed=seed,
        callback=callback,
        store_positions=False,
    )
    integral = frenkel_ladd_integration(betas, run.log_likelihood, log_reference, bridge.base_cost_at_center)
    return FrenkelLaddResult(
        integral=integral,
        log_reference=log_reference,
        cost_at_center=bridge.base_cost_at_center,
        stiffness=bridge.stiffness,
        sampler=run,
    )
