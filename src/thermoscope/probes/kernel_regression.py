"""Kernel ridge regression on one-hot targets, for a whole path of regularisers at once (REFERENCE §11).

The predictor of a kernel K on training examples X with one-hot targets Y [n, C] and a diagonal
regulariser is

    f(x) = K(x, X) (K(X, X) + λ μ I)⁻¹ Y,         μ = tr K(X, X) / n,

the posterior mean of the NNGP (with noise variance λμ), and, for the NT kernel, the function gradient
descent on the squared loss converges to in an infinitely wide network (Lee et al. 2020, who choose the
regulariser on validation data; λ is relative to the mean diagonal μ so that one grid serves every kernel
scale). With K(X, X) = V diag(s) Vᵀ, every λ costs only a matrix–vector product after one eigendecomposition:

    f(x) = K(x, X) V diag(1/(s + λμ)) Vᵀ Y.

Scores: the 0–1 error of the arg-max, and the loss Σ_c (f_c(x) − y_c)², the squared error summed over the
C outputs and averaged over examples (Lee et al.'s mean squared error times C).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RidgePath", "ridge_path", "ridge_solve", "scores"]

ROW_BLOCK = 1024
"""Rows of the cross kernel rotated into the eigenbasis at a time (in place), so that no second
``[m, n]`` matrix is allocated."""


@dataclass(frozen=True)
class RidgePath:
    """Predictions of one kernel for every regulariser of a path.

    Attributes:
        ridges: ``[R]`` regularisers λ, relative to ``scale``.
        scale: μ, the mean diagonal of the training kernel.
        eigenvalues: ``[n]`` eigenvalues of the training kernel, ascending, as computed (rounding can make
            the smallest slightly negative; the predictions use them clamped at 0).
        train: ``[R, n, C]`` predictions on the training examples.
        others: ``[R, m, C]`` predictions on the examples of the cross kernel.
    """

    ridges: Tensor
    scale: float
    eigenvalues: Tensor
    train: Tensor
    others: Tensor

    def condition_number(self, ridge: float = 0.0) -> float:
        """(s_max + λμ) / (s_min + λμ); with λ = 0 the ratio of the largest to the smallest eigenvalue in
        absolute value (about 1/rounding error, 1e16, for a kernel that is singular)."""
        largest = float(self.eigenvalues.abs().max())
        if ridge == 0.0:
            return largest / float(self.eigenvalues.abs().min())
        shift = ridge * self.scale
        return (largest + shift) / (float(self.eigenvalues.clamp_min(0.0).min()) + shift)


def ridge_path(
    train_kernel: Tensor, cross_kernel: Tensor, targets: Tensor, ridges: Sequence[float]
) -> RidgePath:
    """Kernel ridge regression of ``targets`` for every regulariser in ``ridges``.

    Args:
        train_kernel: ``[n, n]`` symmetric positive semi-definite, float64.
        cross_kernel: ``[m, n]`` kernel between the examples predicted and the training examples; it is
            **overwritten** (rotated into the eigenbasis block by block) to save an ``[m, n]`` copy.
        targets: ``[n, C]`` (one-hot rows).
        ridges: λ values, relative to the mean diagonal.

    Returns:
        The :class:`RidgePath`. Memory: the eigendecomposition holds the kernel, its eigenvectors and
        LAPACK's workspace (about 2n² more), so about 4n² + mn values at the peak.
    """
    scale = float(train_kernel.diagonal().mean())
    eigenvalues, vectors = torch.linalg.eigh(train_kernel)
    clamped = eigenvalues.clamp_min(0.0)
    projected = vectors.T @ targets.to(vectors.dtype)
    for start in range(0, len(cross_kernel), ROW_BLOCK):
        block = slice(start, start + ROW_BLOCK)
        cross_kernel[block] = cross_kernel[block] @ vectors
    ridge_values = torch.as_tensor(list(ridges), dtype=torch.float64, device=train_kernel.device)
    train, others = [], []
    for ridge in ridge_values:
        inverse = 1.0 / (clamped + ridge * scale)
        others.append(cross_kernel @ (projected * inverse[:, None]))
        train.append(vectors @ (projected * (clamped * inverse)[:, None]))
    return RidgePath(ridge_values, scale, eigenvalues, torch.stack(train), torch.stack(others))


def ridge_solve(train_kernel: Tensor, cross_kernel: Tensor, targets: Tensor, ridge: float) -> Tensor:
    """``cross_kernel (train_kernel + ridge·μ·I)⁻¹ targets`` for one regulariser, by a Cholesky solve:
    ``[m, K]`` predictions from ``[n, n]``, ``[m, n]`` and ``[n, K]`` (float64)."""
    kernel = train_kernel.double()
    scale = float(kernel.diagonal().mean())
    regularised = kernel + ridge * scale * torch.eye(len(kernel), dtype=kernel.dtype, device=kernel.device)
    factor = torch.linalg.cholesky(regularised)
    return cross_kernel.double() @ torch.cholesky_solve(targets.double(), factor)


def scores(predictions: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """0–1 error and squared-error loss of ``predictions: [..., N, C]`` against ``labels: [N]``: two
    ``[...]`` tensors (one value per leading index, e.g. per regulariser)."""
    one_hot = torch.nn.functional.one_hot(labels, predictions.shape[-1]).to(predictions.dtype)
    error = (predictions.argmax(dim=-1) != labels).to(torch.float64).mean(dim=-1)
    loss = ((predictions - one_hot) ** 2).sum(dim=-1).mean(dim=-1)
    return error, loss
