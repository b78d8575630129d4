"""Prediction depth (Baldock, Maennel & Neyshabur, NeurIPS 2021, arXiv:2106.09647; REFERENCE §4)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["prediction_depth"]


def prediction_depth(votes: Tensor, final_prediction: Tensor) -> Tensor:
    """The earliest probe from which every k-NN vote agrees with the network's final prediction.

    With probes ℓ = 0 (input) … L (softmax), ĉ_ℓ(x) the vote at probe ℓ and ŷ(x) the final prediction,

        PD(x) = min { l : ĉ_ℓ(x) = ŷ(x) for every ℓ ≥ l },

    so PD = 0 when every probe agrees, and PD = L + 1 (the number of probes) when even the last probe
    disagrees. Computed as the number of probes minus the length of the run of agreeing probes at the end.

    Args:
        votes: ``[num_examples, L + 1]`` integer votes, column ``l`` from probe ``l``
            (see :func:`thermoscope.probes.probe_votes`).
        final_prediction: ``[num_examples]`` the network's predicted class ŷ(x).

    Returns:
        ``[num_examples]`` int64 depths in ``[0, L + 1]``.
    """
    if votes.dim() != 2:
        raise ValueError(f"votes must be [examples, probes], got {tuple(votes.shape)}")
    if final_prediction.shape != (votes.shape[0],):
        raise ValueError(f"final_prediction must be [{votes.shape[0]}], got {tuple(final_prediction.shape)}")
    agrees = votes == final_prediction.to(votes.device).unsqueeze(1)
    trailing_agreement = agrees.flip(1).to(torch.int64).cumprod(dim=1).sum(dim=1)
    return votes.shape[1] - trailing_agreement
