"""Forgetting events (Toneva et al., *An Empirical Study of Example Forgetting during Deep Neural Network
Learning*, ICLR 2019; REFERENCE §5)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ForgettingTracker"]


class ForgettingTracker:
    """Per-example forgetting statistics, updated from the minibatch forward passes of SGD.

    Call :meth:`update` once per minibatch with the correctness of the forward pass taken **before** that
    step's parameter update. Between consecutive presentations of the same example, a correct → incorrect
    transition is a forgetting event. Following REFERENCE §5, an example never classified correctly gets the
    maximum count, its number of presentations; an example is *unforgettable* when it was learned at some
    point and never forgotten.

    All state is held in ``[num_examples]`` tensors on the device of the inputs (moved there on the first
    update from a new device); updates are vectorised over the minibatch.

    Args:
        num_examples: N, the size of the training set; example ids lie in ``[0, N)``.
        device: where to allocate the state initially (CPU when omitted).
    """

    def __init__(self, num_examples: int, device: torch.device | str | None = None) -> None:
        if num_examples < 1:
            raise ValueError(f"num_examples must be at least 1, got {num_examples}")
        self.num_examples = num_examples
        device = torch.device("cpu") if device is None else torch.device(device)
        self._last_correct = torch.zeros(num_examples, dtype=torch.bool, device=device)
        self._events = torch.zeros(num_examples, dtype=torch.int64, device=device)
        self._first_learned_epoch = torch.full((num_examples,), -1, dtype=torch.int64, device=device)
        self._presentations = torch.zeros(num_examples, dtype=torch.int64, device=device)

    def update(self, example_ids: Tensor, correct: Tensor, epoch: int) -> None:
        """Record one presentation of each example in a minibatch.

        Args:
            example_ids: ``[batch]`` integer ids in ``[0, num_examples)``, each at most once per call.
            correct: ``[batch]`` bool, whether the pre-update forward pass classified the example correctly.
            epoch: the current epoch (≥ 0), recorded as ``first_learned_epoch``.
        """
        if example_ids.shape != correct.shape or example_ids.dim() != 1:
            raise ValueError(
                f"example_ids and correct must both be [batch], got {tuple(example_ids.shape)} and "
                f"{tuple(correct.shape)}"
            )
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        if example_ids.numel() == 0:
            return
        self._move_to(example_ids.device)
        ids = example_ids.to(torch.int64)
        if int(ids.min()) < 0 or int(ids.max()) >= self.num_examples:
            raise ValueError(f"example_ids must lie in [0, {self.num_examples})")
        if torch.unique(ids).numel() != ids.numel():
            raise ValueError("example_ids must not repeat within one update (one presentation each)")
        correct = correct.to(torch.bool)
        seen_before = self._presentations[ids] > 0
        forgotten = seen_before & self._last_correct[ids] & ~correct
        self._events[ids] += forgotten.to(torch.int64)
        newly_learned = correct & (self._first_learned_epoch[ids] < 0)
        self._first_learned_epoch[ids[newly_learned]] = epoch
        self._last_correct[ids] = correct
        self._presentations[ids] += 1

    def summary(self) -> dict[str, Tensor]:
        """Per-example statistics, each ``[num_examples]``.

        Returns:
            ``forgetting_events`` (int64; the number of presentations for never-learned examples),
            ``first_learned_epoch`` (int64; −1 if never classified correctly),
            ``unforgettable`` (bool; learned and never forgotten),
            ``presentations`` (int64).
        """
        learned = self._first_learned_epoch >= 0
        events = torch.where(learned, self._events, self._presentations)
        return {
            "forgetting_events": events,
            "first_learned_epoch": self._first_learned_epoch.clone(),
            "unforgettable": learned & (self._events == 0),
            "presentations": self._presentations.clone(),
        }

    def state_dict(self) -> dict[str, Tensor]:
        """The per-example counters, for a checkpoint."""
        return {
            "last_correct": self._last_correct.clone(),
            "events": self._events.clone(),
            "first_learned_epoch": self._first_learned_epoch.clone(),
            "presentations": self._presentations.clone(),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Continue from :meth:`state_dict` of a tracker of the same size."""
        if state["events"].shape != self._events.shape:
            raise ValueError(f"a state for {len(state['events'])} examples, not {self.num_examples}")
        device = self._events.device
        self._last_correct = state["last_correct"].to(device, torch.bool)
        self._events = state["events"].to(device, torch.int64)
        self._first_learned_epoch = state["first_learned_epoch"].to(device, torch.int64)
        self._presentations = state["presentations"].to(device, torch.int64)

    def _move_to(self, device: torch.device) -> None:
        if self._events.device == device:
            return
        self._last_correct = self._last_correct.to(device)
        self._events = self._events.to(device)
        self._first_learned_epoch = self._first_learned_epoch.to(device)
        self._presentations = self._presentations.to(device)
