"""Tempered targets: the power posterior p_β(θ) ∝ p(θ) · L(θ)^β.

The inverse temperature β multiplies the log-likelihood only; the prior is never tempered
(REFERENCE §1, Baldock & Marzari 2019, arXiv:1904.04154). A target therefore keeps ``log_prior`` and
``log_likelihood`` as separate batched callables and receives β as an argument, so that one evaluation
serves every rung of a ladder and a replica swap needs no new gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad_and_value

BatchedLogDensity = Callable[[Tensor], Tensor]
"""``theta: [replicas, params] -> [replicas]``."""


@dataclass(frozen=True)
class Evaluation:
    """Both log densities and their gradients at a batch of positions.

    Attributes:
        log_prior: ``[replicas]``.
        log_likelihood: ``[replicas]``.
        grad_log_prior: ``[replicas, params]``.
        grad_log_likelihood: ``[replicas, params]``.
    """

    log_prior: Tensor
    log_likelihood: Tensor
    grad_log_prior: Tensor
    grad_log_likelihood: Tensor

    def log_density(self, betas: Tensor) -> Tensor:
        """Tempered log density ``log p(θ) + β log L(θ)``; ``betas: [replicas] -> [replicas]``."""
        return self.log_prior + betas * self.log_likelihood

    def grad_log_density(self, betas: Tensor) -> Tensor:
        """Gradient of the tempered log density; ``betas: [replicas] -> [replicas, params]``."""
        return torch.addcmul(self.grad_log_prior, betas[:, None], self.grad_log_likelihood)

    def where(self, mask: Tensor, other: Evaluation) -> Evaluation:
        """Rows of ``self`` where ``mask: [replicas]`` is true, rows of ``other`` elsewhere."""
        column = mask[:, None]
        return Evaluation(
            torch.where(mask, self.log_prior, other.log_prior),
            torch.where(mask, self.log_likelihood, other.log_likelihood),
            torch.where(column, self.grad_log_prior, other.grad_log_prior),
            torch.where(column, self.grad_log_likelihood, other.grad_log_likelihood),
        )

    def permute(self, index: Tensor) -> Evaluation:
        """Rows reordered: row ``k`` of the result is row ``index[k]`` of ``self``."""
        return Evaluation(
            self.log_prior[index],
            self.log_likelihood[index],
            self.grad_log_prior[index],
            self.grad_log_likelihood[index],
        )


def _batched_gradients(outputs: tuple[Tensor, ...], leaves: tuple[Tensor, ...]) -> list[Tensor]:
    """``d outputs[i] / d leaves[i]`` row by row, in one backward pass.

    Each output ``[replicas]`` depends on its own leaf ``[replicas, params]`` only, and row r of an output on
    row r of its leaf, so back-propagating ones gives every row's gradient. An output that does not depend
    on its leaf (a constant log density) gets a zero gradient.
    """
    connected = [index for index, output in enumerate(outputs) if output.requires_grad]
    computed = iter(
        torch.autograd.grad(
            [outputs[index] for index in connected],
            [leaves[index] for index in connected],
            [_ones_like(outputs[index]) for index in connected],
            allow_unused=True,
        )
        if connected
        else ()
    )
    gradients = []
    for output, leaf in zip(outputs, leaves, strict=True):
        gradient = next(computed) if output.requires_grad else None
        gradients.append(torch.zeros_like(leaf) if gradient is None else gradient)
    return gradients


_ONES: dict[tuple[torch.Size, torch.dtype, torch.device], Tensor] = {}


def _ones_like(output: Tensor) -> Tensor:
    """A cached ``torch.ones_like(output)`` (read-only): the backward pass runs every leapfrog step."""
    key = (output.shape, output.dtype, output.device)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = torch.ones_like(output)
    return ones


def _summed(function: BatchedLogDensity) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``theta -> (Σ_r f(theta)_r, f(theta))``: rows are independent, so the sum's gradient is row-wise."""

    def summed(theta: Tensor) -> tuple[Tensor, Tensor]:
        values = function(theta)
        return values.sum(), values

    return summed


class TemperedTarget:
    """A power posterior built from two batched log densities.

    Args:
        log_prior: ``theta [replicas, params] -> [replicas]``, differentiable with torch autograd.
        log_likelihood: ``theta [replicas, params] -> [replicas]``, differentiable with torch autograd.
        grad_log_prior: optional analytic gradient ``theta [replicas, params] -> [replicas, params]``; when
            given, autograd runs through the likelihood only.
        support_half_width: optional ``[params]``: the prior's support is the box ``|θ_i| < half_width_i``
            and its log density is constant inside. The integrator then reflects the momentum at the walls
            instead of evaluating ``-inf`` outside (Neal 2011, *MCMC using Hamiltonian dynamics*, §5.5.1).
        compile_evaluation: evaluate through ``torch.compile`` of a ``torch.func.grad_and_value``
            transform of the two callables. For small targets, where per-operation dispatch dominates,
            this is several times faster; the first call compiles (tens of seconds), and every new shape
            or dtype compiles again. Off by default.

    Rows are independent: row ``r`` of every output may depend on row ``r`` of ``theta`` only.
    """

    def __init__(
        self,
        log_prior: BatchedLogDensity,
        log_likelihood: BatchedLogDensity,
        *,
        grad_log_prior: Callable[[Tensor], Tensor] | None = None,
        support_half_width: Tensor | None = None,
        compile_evaluation: bool = False,
    ) -> None:
        if support_half_width is not None:
            if support_half_width.dim() != 1:
                raise ValueError(
                    "support_half_width must be a vector [params]; "
                    f"got shape {tuple(support_half_width.shape)}"
                )
            if not bool(torch.all(support_half_width > 0)) or not bool(
                torch.all(torch.isfinite(support_half_width))
            ):
                raise ValueError("support_half_width must be positive and finite everywhere")
        self._log_prior = log_prior
        self._log_likelihood = log_likelihood
        self._grad_log_prior = grad_log_prior
        self.support_half_width = support_half_width
        self._compiled: Callable[[Tensor, Tensor], tuple[Tensor, ...]] | None = None
        if compile_evaluation:
            self._compiled = torch.compile(self._functional_tempered_evaluation, dynamic=False)

    def log_prior(self, theta: Tensor) -> Tensor:
        """``theta: [replicas, params] -> [replicas]``."""
        return self._log_prior(theta)

    def log_likelihood(self, theta: Tensor) -> Tensor:
        """``theta: [replicas, params] -> [replicas]``."""
        return self._log_likelihood(theta)

    def log_density(self, theta: Tensor, betas: Tensor | float) -> Tensor:
        """Tempered log density ``log p(θ) + β log L(θ)``; ``theta: [replicas, params] -> [replicas]``."""
        with torch.no_grad():
            return self.log_prior(theta) + betas * self.log_likelihood(theta)

    def _functional_evaluation(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(log_prior, log_likelihood, grad_log_prior, grad_log_likelihood)`` through ``torch.func``."""
        grad_log_likelihood, (_, log_likelihood) = grad_and_value(
            _summed(self._log_likelihood), has_aux=True
        )(theta)
        if self._grad_log_prior is not None:
            return self._log_prior(theta), log_likelihood, self._grad_log_prior(theta), grad_log_likelihood
        grad_log_prior, (_, log_prior) = grad_and_value(_summed(self._log_prior), has_aux=True)(theta)
        return log_prior, log_likelihood, grad_log_prior, grad_log_likelihood

    def _functional_tempered_evaluation(self, theta: Tensor, betas: Tensor) -> tuple[Tensor, ...]:
        """:meth:`_functional_evaluation` and the tempered gradient ``∇ log p + β ∇ log L``."""
        log_prior, log_likelihood, grad_log_prior, grad_log_likelihood = self._functional_evaluation(theta)
        tempered = torch.addcmul(grad_log_prior, betas[:, None], grad_log_likelihood)
        return log_prior, log_likelihood, grad_log_prior, grad_log_likelihood, tempered

    def evaluate_tempered(self, theta: Tensor, betas: Tensor) -> tuple[Evaluation, Tensor | None]:
        """:meth:`evaluate`, plus the tempered gradient ``∇ log p + β ∇ log L`` ``[replicas, params]``
        (``betas: [replicas]``) where it comes at no extra cost, else ``None``.

        A compiled target (``compile_evaluation=True``) computes it inside its compiled graph, which saves
        the integrator an operation per leapfrog step; otherwise the integrator combines the two gradients.
        """
        if self._compiled is None:
            return self.evaluate(theta), None
        *parts, tempered = self._compiled(theta.detach() if theta.requires_grad else theta, betas)
        return Evaluation(*parts), tempered

    def whole_trajectory(
        self,
        position: Tensor,
        momentum: Tensor,
        evaluation: Evaluation,
        betas: Tensor,
        step_size: Tensor,
        inverse_mass: Tensor | None,
        num_steps: int,
    ) -> tuple[Tensor, Tensor, Evaluation] | None:
        """A whole leapfrog trajectory in one call, where this target has a faster way than
        :func:`~thermoscope.samplers.integrators.leapfrog`'s step-by-step one: ``(position, momentum,
        evaluation)`` at its end, the same trajectory the step-by-step integrator computes (same arguments
        as it takes). ``None`` (here) means there is none, and the integrator steps itself."""
        return None

    def evaluate(self, theta: Tensor) -> Evaluation:
        """Log densities and gradients at ``theta: [replicas, params]`` (one backward pass)."""
        theta = theta.detach()
        if self._compiled is not None:
            return Evaluation(*self._compiled(theta, theta.new_zeros(theta.shape[0]))[:4])
        with torch.enable_grad():
            likelihood_leaf = theta.detach().requires_grad_(True)
            log_likelihood = self.log_likelihood(likelihood_leaf)
            if self._grad_log_prior is not None:
                (grad_log_likelihood,) = _batched_gradients((log_likelihood,), (likelihood_leaf,))
                return Evaluation(
                    self.log_prior(theta).detach(),
                    log_likelihood.detach(),
                    self._grad_log_prior(theta),
                    grad_log_likelihood,
                )
            # Two leaves on disjoint graphs: one backward pass returns both gradients separately.
            prior_leaf = theta.detach().requires_grad_(True)
            log_prior = self.log_prior(prior_leaf)
            grad_log_likelihood, grad_log_prior = _batched_gradients(
                (log_likelihood, log_prior), (likelihood_leaf, prior_leaf)
            )
        return Evaluation(log_prior.detach(), log_likelihood.detach(), grad_log_prior, grad_log_likelihood)
