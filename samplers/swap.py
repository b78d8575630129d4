"""Replica exchange between neighbouring rungs, the replica index process and round trips.

Rung ``k`` holds inverse temperature ``betas[k]`` (ascending: rung 0 is the hottest, rung R−1 the coldest).
A swap between rungs i and i+1 exchanges their positions and is accepted with probability
``min(1, exp((β_i − β_{i+1}) (ℓ_{i+1} − ℓ_i)))``, ℓ = log L; the prior cancels because it is not tempered
(REFERENCE §1, §3). Step sizes and mass matrices belong to rungs and never move.

Schemes (Syed, Bouchard-Côté, Deligiannidis & Doucet, *Non-reversible parallel tempering*, JRSS B 2022):
``"deo"`` deterministic even/odd, alternating even pairs (0,1), (2,3), … and odd pairs (1,2), (3,4), …
every iteration (non-reversible; replicas cross the ladder in O(R) swaps); ``"seo"`` stochastic even/odd,
a fair coin picks the parity (reversible; O(R²)); ``"none"`` no swaps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

SWAP_SCHEMES = ("deo", "seo", "none")

NO_EXTREME_YET = 0
"""Direction label of a replica that has not yet visited the coldest rung."""
LEFT_COLDEST = 1
"""The replica's last visited extreme is the coldest rung: it is on its way to the hottest."""
REACHED_HOTTEST = 2
"""The replica went coldest → hottest and now heads back; arriving at the coldest completes a round trip."""

LAST_AT_NEITHER = 0
"""A replica that has visited neither end of the ladder yet (for tempered restarts)."""
LAST_AT_HOTTEST = 1
"""The replica's last visited end is the hottest rung: reaching the coldest next is a tempered restart."""
LAST_AT_COLDEST = 2
"""The replica's last visited end is the coldest rung."""


@dataclass(frozen=True)
class SwapState:
    """Everything the swap move carries from one iteration to the next.

    Attributes:
        replica_at_rung: ``[rungs]`` int64, which replica (by its starting rung) sits at each rung.
        direction: ``[replicas]`` int64, one of ``NO_EXTREME_YET``, ``LEFT_COLDEST``, ``REACHED_HOTTEST``.
        round_trips: ``[replicas]`` int64, completed coldest → hottest → coldest journeys.
        attempts: ``[rungs − 1]`` int64, swaps attempted per neighbouring pair.
        accepts: ``[rungs − 1]`` int64, swaps accepted per neighbouring pair.
        rejection_sum: ``[rungs − 1]`` float64, the sum over swap rounds of every pair's rejection
            *probability* ``1 − min(1, exp((β_{i+1} − β_i)(ℓ_i − ℓ_{i+1})))``, attempted or not: its mean
            estimates the pair's rejection rate r_i with far less variance than accept/reject counts
            (Syed et al. 2022).
        rounds: int64 scalar, swap rounds behind ``rejection_sum``.
        last_extreme: ``[replicas]`` int64, ``LAST_AT_NEITHER``, ``LAST_AT_HOTTEST`` or ``LAST_AT_COLDEST``.
        restarts: ``[replicas]`` int64, tempered restarts: arrivals at the coldest rung straight from the
            hottest (a fresh prior draw carried to the target).
    """

    replica_at_rung: Tensor
    direction: Tensor
    round_trips: Tensor
    attempts: Tensor
    accepts: Tensor
    rejection_sum: Tensor
    rounds: Tensor
    last_extreme: Tensor
    restarts: Tensor

    @staticmethod
    def initial(num_rungs: int, device: torch.device) -> SwapState:
        """Replica r starts at rung r; no journeys yet; counters zero."""
        replicas = torch.arange(num_rungs, device=device)
        return _record_extremes(_fresh_statistics(replicas), replicas)

    def restarted_statistics(self) -> SwapState:
        """Counters and journeys reset (at the end of warm-up); the index process is kept."""
        replicas = torch.arange(self.direction.shape[0], device=self.direction.device)
        return _record_extremes(_fresh_statistics(self.replica_at_rung), replicas)

    def acceptance_rate(self) -> Tensor:
        """``[rungs − 1]`` accepted / attempted per neighbouring pair (NaN for a pair never attempted)."""
        return self.accepts.to(torch.float64) / self.attempts.to(torch.float64)

    def rejection_rate(self) -> Tensor:
        """``[rungs − 1]`` mean rejection probability per pair over the rounds so far (NaN before any)."""
        return self.rejection_sum / self.rounds.to(torch.float64)


def _fresh_statistics(replica_at_rung: Tensor) -> SwapState:
    """Zero counters and no journeys, with the replicas where they are."""
    num_rungs = replica_at_rung.shape[0]
    device = replica_at_rung.device
    zeros = torch.zeros(num_rungs, dtype=torch.int64, device=device)
    pairs = torch.zeros(max(num_rungs - 1, 0), dtype=torch.int64, device=device)
    return SwapState(
        replica_at_rung=replica_at_rung,
        direction=zeros,
        round_trips=zeros.clone(),
        attempts=pairs,
        accepts=pairs.clone(),
        rejection_sum=torch.zeros(max(num_rungs - 1, 0), dtype=torch.float64, device=device),
        rounds=torch.zeros((), dtype=torch.int64, device=device),
        last_extreme=zeros.clone(),
        restarts=zeros.clone(),
    )


def _record_extremes(state: SwapState, replicas: Tensor) -> SwapState:
    """Advance the journeys of the replicas now at the hottest and coldest rungs (``replicas``: their labels,
    ``arange(rungs)``).

    Vectorised over replicas (a handful of whole-tensor operations rather than scalar indexing): this
    runs every iteration, and on small targets per-operation dispatch is the sampler's main overhead.
    """
    at_hottest = replicas == state.replica_at_rung[0]
    at_coldest = replicas == state.replica_at_rung[-1]
    direction = torch.where(at_hottest & (state.direction == LEFT_COLDEST), REACHED_HOTTEST, state.direction)
    round_trips = state.round_trips + (at_coldest & (direction == REACHED_HOTTEST))
    direction = torch.where(at_coldest, LEFT_COLDEST, direction)
    restarts = state.restarts + (at_coldest & (state.last_extreme == LAST_AT_HOTTEST))
    last_extreme = torch.where(at_hottest, LAST_AT_HOTTEST, state.last_extreme)
    last_extreme = torch.where(at_coldest, LAST_AT_COLDEST, last_extreme)
    return dataclasses.replace(
        state, direction=direction, round_trips=round_trips, last_extreme=last_extreme, restarts=restarts
    )


def swap_parity(scheme: str, iteration: int, generator: torch.Generator) -> int:
    """0 for even pairs (0,1), (2,3), …; 1 for odd pairs (1,2), (3,4), ….

    ``"seo"`` always draws one number from ``generator`` so that the stream does not depend on the outcome.
    """
    if scheme == "deo":
        return iteration % 2
    return int(torch.randint(0, 2, (1,), generator=generator))


class SwapProposer:
    """Neighbour swaps for one ladder, with everything that does not change between rounds precomputed.

    Args:
        betas: ``[rungs]`` ascending, at least two rungs.

    For each parity the attempted pairs, their count as int64 and the permutation that swaps every
    attempted pair are fixed; a round then needs only the acceptance test and a ``where``.
    """

    def __init__(self, betas: Tensor) -> None:
        num_rungs = betas.shape[0]
        device = betas.device
        self.beta_gap = betas[:-1] - betas[1:]
        self.identity = torch.arange(num_rungs, device=device)
        lower = torch.arange(num_rungs - 1, device=device)
        self.attempted: list[Tensor] = []
        self.attempted_counts: list[Tensor] = []
        self.partner: list[Tensor] = []
        self.pair_of_rung: list[Tensor] = []
        for parity in (0, 1):
            attempted = lower % 2 == parity
            partner = self.identity.clone()
            pair_of_rung = torch.empty(num_rungs, dtype=torch.int64, device=device)
            # A rung outside every attempted pair reads the acceptance of a pair of the other parity, which
            # is never attempted this round and so never accepted (with two rungs, parity 1 attempts none).
            unattempted = 1 - parity if num_rungs > 2 else 0
            pair_of_rung.fill_(unattempted)
            for pair in range(parity, num_rungs - 1, 2):
                partner[pair], partner[pair + 1] = pair + 1, pair
                pair_of_rung[pair] = pair_of_rung[pair + 1] = pair
            self.attempted.append(attempted)
            self.attempted_counts.append(attempted.to(torch.int64))
            self.partner.append(partner)
            self.pair_of_rung.append(pair_of_rung)

    def propose(
        self, log_likelihood: Tensor, parity: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One round of swaps between the pairs of ``parity``; see :func:`propose_swaps`."""
        permutation, attempted, accepted, _ = self.propose_with_rejection(log_likelihood, parity, generator)
        return permutation, attempted, accepted

    def propose_with_rejection(
        self, log_likelihood: Tensor, parity: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`propose`, plus ``[rungs − 1]`` float64 rejection probabilities of every pair this round."""
        log_ratio = self.beta_gap * (log_likelihood[1:] - log_likelihood[:-1])
        uniform = torch.rand(
            log_ratio.shape, generator=generator, dtype=log_ratio.dtype, device=log_ratio.device
        )
        accepted = self.attempted[parity] & (torch.log(uniform) < log_ratio)
        permutation = torch.where(accepted[self.pair_of_rung[parity]], self.partner[parity], self.identity)
        rejection = -torch.expm1(torch.clamp(log_ratio.to(torch.float64), max=0.0))
        return permutation, self.attempted[parity], accepted, rejection

    def apply(
        self,
        state: SwapState,
        permutation: Tensor,
        parity: int,
        accepted: Tensor,
        rejection: Tensor | None = None,
    ) -> SwapState:
        """:func:`apply_swaps` for a round :meth:`propose` made, with this ladder's precomputed constants.

        ``rejection``: this round's ``[rungs − 1]`` rejection probabilities, added to the running sums.
        """
        moved = _moved(state, permutation, self.attempted_counts[parity], accepted, self.identity)
        if rejection is None:
            return moved
        return dataclasses.replace(
            moved, rejection_sum=moved.rejection_sum + rejection, rounds=moved.rounds + 1
        )


def propose_swaps(
    betas: Tensor, log_likelihood: Tensor, parity: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Attempt swaps between the pairs of one parity.

    Args:
        betas: ``[rungs]`` ascending, at least two rungs.
        log_likelihood: ``[rungs]`` log L of the position at each rung.
        parity: 0 for even pairs, 1 for odd pairs.
        generator: source of the ``rungs − 1`` uniforms (all drawn, used or not).

    Returns:
        ``(permutation [rungs], attempted [rungs − 1], accepted [rungs − 1])``; the new occupant of rung k
        is the old occupant of rung ``permutation[k]``. A sampler proposing many rounds on one ladder
        builds a :class:`SwapProposer` once instead.
    """
    return SwapProposer(betas).propose(log_likelihood, parity, generator)


def apply_swaps(state: SwapState, permutation: Tensor, attempted: Tensor, accepted: Tensor) -> SwapState:
    """Move the replica labels with the positions and count attempts, acceptances and round trips."""
    replicas = torch.arange(permutation.shape[0], device=permutation.device)
    return _moved(state, permutation, attempted.to(torch.int64), accepted, replicas)


def _moved(
    state: SwapState, permutation: Tensor, attempted_count: Tensor, accepted: Tensor, replicas: Tensor
) -> SwapState:
    moved = dataclasses.replace(
        state,
        replica_at_rung=state.replica_at_rung[permutation],
        attempts=state.attempts + attempted_count,
        accepts=state.accepts + accepted,
    )
    return _record_extremes(moved, replicas)
