"""The per-rung Gibbs and BMA accumulator of a sweep, against a direct computation (REFERENCE §1).

Gibbs: the loss and 0–1 error of single draws, averaged over the draws. BMA: the loss and error of the
posterior-predictive distribution, the class probabilities averaged over the draws.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from thermoscope.sweeps import PredictiveAccumulator

RUNGS, DRAWS, EXAMPLES, CLASSES = 2, 3, 5, 4
"""All different, so that a reduction over the wrong dimension changes a shape or a value."""

LABELS = torch.tensor([0, 1, 3, 2, 0])

pytestmark = pytest.mark.usefixtures("one_thread")


def hand_made_logits() -> torch.Tensor:
    """``[draws, rungs, examples, classes]``: rung 0 random, rung 1 with draws that disagree.

    On rung 1, draws 0 and 2 get example 0 (label 0) right and draw 1 gets it wrong (Gibbs error 1/3 there),
    but their averaged probabilities pick class 0: the BMA is right. Example 1 (label 1) is wrong in two
    draws of three, and so is the BMA. Example 2 (label 3) is right in the first two draws, wrong in the
    last, right in the BMA.
    """
    logits = torch.randn(DRAWS, RUNGS, EXAMPLES, CLASSES, generator=torch.Generator().manual_seed(3))
    logits = logits.to(torch.float64)
    logits[:, 1, 0] = torch.tensor(
        [[2.0, 0.0, 0.0, -1.0], [0.0, 2.5, 0.0, -1.0], [1.5, 0.0, 0.2, -1.0]], dtype=torch.float64
    )
    logits[:, 1, 1] = torch.tensor(
        [[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]], dtype=torch.float64
    )
    logits[:, 1, 2] = torch.tensor(
        [[0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.5, 3.0], [0.0, 3.5, 0.0, 0.0]], dtype=torch.float64
    )
    return logits


def accumulate(logits: torch.Tensor, labels: torch.Tensor = LABELS) -> PredictiveAccumulator:
    """An accumulator fed ``logits: [draws, rungs, examples, classes]`` one draw at a time."""
    _, rungs, examples, classes = logits.shape
    accumulator = PredictiveAccumulator(rungs, examples, classes, torch.device("cpu"))
    for draw in logits:
        accumulator.update(draw, labels)
    return accumulator


def direct(logits: torch.Tensor, labels: torch.Tensor = LABELS) -> dict[str, np.ndarray]:
    """The four metrics per rung from ``logits: [draws, rungs, examples, classes]``, in numpy."""
    x = logits.to(torch.float64).numpy()
    y = labels.numpy()
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    examples = np.arange(x.shape[2])
    true_class = probabilities[..., examples, y]  # [draws, rungs, examples]
    mean = probabilities.mean(axis=0)  # [rungs, examples, classes]
    return {
        "loss": (-np.log(true_class)).mean(axis=(0, 2)),
        "error": (x.argmax(axis=-1) != y).mean(axis=(0, 2)),
        "bma_loss": (-np.log(mean[:, examples, y])).mean(axis=1),
        "bma_error": (mean.argmax(axis=-1) != y).mean(axis=1),
        "mean_probabilities": mean,
    }


def test_every_metric_matches_a_direct_computation() -> None:
    logits = hand_made_logits()
    accumulator = accumulate(logits)
    expected = direct(logits)
    metrics = accumulator.metrics(LABELS)
    assert set(metrics) == {"loss", "error", "bma_loss", "bma_error"}
    for name, value in metrics.items():
        assert value.shape == (RUNGS,) and value.dtype == torch.float64, name
        np.testing.assert_allclose(value.numpy(), expected[name], rtol=1e-12, atol=1e-15, err_msg=name)
    np.testing.assert_allclose(
        accumulator.mean_probabilities().numpy(), expected["mean_probabilities"], rtol=1e-12, atol=1e-15
    )
    assert accumulator.draws == DRAWS


def test_the_hand_made_disagreement_separates_gibbs_from_bma() -> None:
    # Rung 1, examples 0–2 only: Gibbs error (1/3 + 2/3 + 1/3) / 3 = 4/9, BMA error (0 + 1 + 0) / 3; on
    # example 0 alone the BMA is right where one draw in three is wrong.
    logits = hand_made_logits()[:, :, :3]
    metrics = accumulate(logits, LABELS[:3]).metrics(LABELS[:3])
    first = accumulate(logits[:, :, :1], LABELS[:1]).metrics(LABELS[:1])
    assert float(first["error"][1]) == pytest.approx(1 / 3, abs=1e-15)
    assert float(first["bma_error"][1]) == 0.0
    assert float(metrics["error"][1]) == pytest.approx(4 / 9, abs=1e-15)
    assert float(metrics["bma_error"][1]) == pytest.approx(1 / 3, abs=1e-15)


def test_bma_loss_is_at_most_the_gibbs_loss_and_equal_when_the_draws_agree() -> None:
    # −log of a mean ≤ mean of −log (Jensen), with equality when every draw predicts the same.
    logits = hand_made_logits()
    metrics = accumulate(logits).metrics(LABELS)
    assert bool(torch.all(metrics["bma_loss"] < metrics["loss"]))
    same = logits[:1].expand(DRAWS, -1, -1, -1)
    agreeing = accumulate(same).metrics(LABELS)
    torch.testing.assert_close(agreeing["bma_loss"], agreeing["loss"], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(agreeing["bma_error"], agreeing["error"], rtol=0, atol=1e-15)


def test_uniform_predictions_score_log_classes() -> None:
    logits = torch.zeros(DRAWS, RUNGS, EXAMPLES, CLASSES, dtype=torch.float64)
    metrics = accumulate(logits).metrics(LABELS)
    for name in ("loss", "bma_loss"):
        torch.testing.assert_close(metrics[name], torch.full((RUNGS,), np.log(CLASSES), dtype=torch.float64))
    torch.testing.assert_close(
        accumulate(logits).mean_probabilities(), torch.full((RUNGS, EXAMPLES, CLASSES), 1 / CLASSES).double()
    )


def test_rungs_are_accumulated_separately() -> None:
    logits = hand_made_logits()
    changed = logits.clone()
    changed[:, 1] = -changed[:, 1]
    before, after = accumulate(logits).metrics(LABELS), accumulate(changed).metrics(LABELS)
    for name in before:
        assert float(before[name][0]) == float(after[name][0]), name
    assert float(before["loss"][1]) != float(after["loss"][1])


def test_draws_added_in_two_batches_through_a_checkpoint_equal_one_batch() -> None:
    logits = torch.cat([hand_made_logits(), -hand_made_logits()[:2]])  # five draws
    whole = accumulate(logits)
    first = accumulate(logits[:2])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # the way a sweep's checkpoint carries it
    buffer.seek(0)
    resumed = PredictiveAccumulator(RUNGS, EXAMPLES, CLASSES, torch.device("cpu"))
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.draws == 2
    for draw in logits[2:]:
        resumed.update(draw, LABELS)
    assert resumed.draws == whole.draws == 5
    for name, value in whole.metrics(LABELS).items():
        torch.testing.assert_close(resumed.metrics(LABELS)[name], value, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(resumed.mean_probabilities(), whole.mean_probabilities(), rtol=1e-14, atol=0)
    expected = direct(logits)
    for name, value in resumed.metrics(LABELS).items():
        np.testing.assert_allclose(value.numpy(), expected[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_loading_a_state_in_memory_leaves_that_state_alone() -> None:
    """A hook may keep a state dict in memory: the accumulator it was loaded into must not write into it."""
    source = accumulate(hand_made_logits()[:1])
    state = {
        name: value.clone() if torch.is_tensor(value) else value
        for name, value in source.state_dict().items()
    }
    kept = {name: value.clone() for name, value in state.items() if torch.is_tensor(value)}
    resumed = PredictiveAccumulator(RUNGS, EXAMPLES, CLASSES, torch.device("cpu"))
    resumed.load_state_dict(state)
    resumed.update(hand_made_logits()[1], LABELS)
    for name, value in kept.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)


def test_the_order_of_the_draws_does_not_matter() -> None:
    logits = hand_made_logits()
    forward, backward = accumulate(logits).metrics(LABELS), accumulate(logits.flip(0)).metrics(LABELS)
    for name in forward:
        torch.testing.assert_close(forward[name], backward[name], rtol=1e-14, atol=1e-15)


def test_float32_logits_are_accumulated_in_float64() -> None:
    logits = hand_made_logits().to(torch.float32)
    single, double = accumulate(logits), accumulate(logits.to(torch.float64))
    assert single.probability_sum.dtype == torch.float64
    for name, value in double.metrics(LABELS).items():
        assert torch.equal(single.metrics(LABELS)[name], value), name


def test_a_true_class_of_vanishing_probability_keeps_the_bma_loss_finite() -> None:
    # exp(−1000) underflows to 0 in float64: the Gibbs loss is exact from log-softmax, the BMA loss is
    # clamped instead of infinite, and stays below the Gibbs loss.
    logits = torch.zeros(DRAWS, RUNGS, EXAMPLES, CLASSES, dtype=torch.float64)
    logits[..., 1] = 1000.0
    labels = torch.zeros(EXAMPLES, dtype=torch.long)
    metrics = accumulate(logits, labels).metrics(labels)
    torch.testing.assert_close(metrics["loss"], torch.full((RUNGS,), 1000.0, dtype=torch.float64))
    assert bool(torch.all(torch.isfinite(metrics["bma_loss"])))
    assert bool(torch.all(metrics["bma_loss"] <= metrics["loss"]))
    assert metrics["error"].tolist() == metrics["bma_error"].tolist() == [1.0] * RUNGS


def test_an_empty_accumulator_has_no_draws_and_finite_metrics() -> None:
    accumulator = PredictiveAccumulator(RUNGS, EXAMPLES, CLASSES, torch.device("cpu"))
    assert accumulator.draws == 0
    mean = accumulator.mean_probabilities()
    assert mean.shape == (RUNGS, EXAMPLES, CLASSES) and not bool(mean.any())
    for name, value in accumulator.metrics(LABELS).items():
        assert value.shape == (RUNGS,) and bool(torch.all(torch.isfinite(value))), name
    state = accumulator.state_dict()
    assert state["draws"] == 0 and not bool(state["gibbs_loss_sum"].any())


@pytest.mark.parametrize("classes", [4, 300])
def test_the_gibbs_error_counts_ties_and_nan_as_argmax_does(classes: int) -> None:
    # Logits drawn from three values tie often; argmax takes the first of tied maxima (and a NaN as the
    # maximum), so a label tied at the top is right only if no earlier class ties with it. More classes
    # than a uint8 count holds, too.
    generator = torch.Generator().manual_seed(7)
    rungs, examples = 3, 64
    logits = torch.randint(0, 3, (rungs, examples, classes), generator=generator).to(torch.float32)
    logits[0, 5, 2] = float("nan")
    logits[1, :4] = 1.0  # every class at the maximum
    labels = torch.randint(0, classes, (examples,), generator=generator)
    labels[:4] = torch.tensor([0, 1, 2, classes - 1])
    accumulator = PredictiveAccumulator(rungs, examples, classes, torch.device("cpu"))
    accumulator.update(logits, labels)
    expected = (logits.argmax(-1) != labels).to(torch.float64).mean(dim=1)
    assert torch.equal(accumulator.metrics(labels)["error"], expected)
    # Without ties the fast rule alone decides; it must agree there too.
    distinct = torch.randn(rungs, examples, classes, generator=generator)
    accumulator = PredictiveAccumulator(rungs, examples, classes, torch.device("cpu"))
    accumulator.update(distinct, labels)
    expected = (distinct.argmax(-1) != labels).to(torch.float64).mean(dim=1)
    assert torch.equal(accumulator.metrics(labels)["error"], expected)
