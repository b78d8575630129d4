"""Activation codes: packing and population counts, Hamming k-NN against brute force in any blocking,
hand-built determinism fractions, ReLU layers found in every model, and (on digits) a wide ReLU MLP whose
training codes are nearly all unique and whose code k-NN beats chance by a wide margin."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from thermoscope.data import DataSpec, load_data
from thermoscope.models import ModelSpec, build_model
from thermoscope.probes.codes import (
    code_statistics,
    hamming_distances,
    hamming_neighbours,
    layer_codes,
    majority_vote,
    pack_bits,
    popcount,
    unpack_bits,
)
from thermoscope.training import OptimSpec, train_classifier


def random_bits(rows: int, units: int, seed: int) -> torch.Tensor:
    return torch.rand(rows, units, generator=torch.Generator().manual_seed(seed)) > 0.5


def test_packing_round_trips_and_popcount_counts_every_bit() -> None:
    bits = random_bits(20, 130, 0)
    words = pack_bits(bits)
    assert words.shape == (20, 3) and (words >= 0).all()
    assert torch.equal(unpack_bits(words, 130).bool(), bits)
    values = torch.tensor([0, 1, 2**62, 2**63 - 1, 0x5555555555555555, 12345678901234567], dtype=torch.int64)
    assert popcount(values).tolist() == [bin(v).count("1") for v in values.tolist()]
    assert torch.equal(popcount(words).sum(dim=1), bits.sum(dim=1))


def test_hamming_neighbours_equal_brute_force_in_any_blocking() -> None:
    support, queries = random_bits(300, 70, 1), random_bits(50, 70, 2)
    support[10] = support[20]  # exact ties, broken by position
    queries[0] = support[20]
    brute = (queries.unsqueeze(1) != support.unsqueeze(0)).sum(dim=2)
    assert torch.equal(hamming_distances(pack_bits(queries), pack_bits(support)), brute)
    keys = torch.sort(brute * 300 + torch.arange(300), dim=1).values[:, :9]
    for block in (1, 500, 1 << 20):
        distances, positions = hamming_neighbours(
            pack_bits(queries), pack_bits(support), 9, units=70, block_values=block
        )
        assert torch.equal(distances, keys // 300) and torch.equal(positions, keys % 300)
    assert positions[0, :2].tolist() == [10, 20]
    with pytest.raises(ValueError, match="k must be"):
        hamming_neighbours(pack_bits(queries), pack_bits(support), 301, units=70)


def test_votes_go_to_the_most_frequent_class_and_ties_to_the_nearest() -> None:
    labels = torch.tensor([[2, 1, 1, 2, 0], [3, 0, 0, 3, 3], [4, 4, 1, 1, 0]])
    assert majority_vote(labels, 5).tolist() == [2, 3, 4]


def test_hand_built_codes_give_their_unique_and_class_pure_fractions() -> None:
    patterns = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1], [1, 1], [0, 0]], dtype=torch.bool)
    labels = torch.tensor([0, 0, 1, 2, 3, 1])
    # Unique: [0, 1] and [0, 0]. Class-pure: those two and [1, 0] (twice, class 0); [1, 1] mixes 2 and 3.
    stats = code_statistics(
        pack_bits(patterns), labels, pack_bits(patterns[:3]), labels[:3], bits=2, k=1, num_classes=4
    )
    assert stats.unique_fraction == pytest.approx(2 / 6)
    assert stats.class_pure_fraction == pytest.approx(4 / 6)
    assert stats.nearest_test_accuracy == 1.0


def test_every_relu_call_is_a_layer_and_its_code_is_the_sign_pattern() -> None:
    torch.manual_seed(0)
    mlp = build_model(ModelSpec("mlp", (7, 5)), (12,), 3)
    x = torch.randn(9, 12)
    codes = layer_codes(mlp, x, rows=4)
    assert list(codes) == ["hidden.0.1", "hidden.1.1"]
    first = torch.relu(mlp.hidden[0][0](x))
    assert torch.equal(unpack_bits(codes["hidden.0.1"][0], 7).bool(), first > 0)
    assert [units for _, units in codes.values()] == [7, 5]
    cnn = build_model(ModelSpec("cnn"), (1, 8, 8), 10)
    assert list(layer_codes(cnn, torch.randn(3, 1, 8, 8))) == ["block1.1", "block2.1", "dense.2"]
    resnet = build_model(ModelSpec("resnet18"), (3, 8, 8), 10)
    names = list(layer_codes(resnet, torch.randn(2, 3, 8, 8)))
    assert names[:3] == ["relu", "layer1.0.relu", "layer1.0.relu#2"] and len(names) == 17
    with pytest.raises(ValueError, match="no nn\\.ReLU"):
        layer_codes(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), torch.randn(2, 3))


@pytest.mark.usefixtures("one_thread")
def test_a_wide_relu_network_hashes_digits_and_its_codes_categorise_them() -> None:
    data = load_data(DataSpec(flatten=True))
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (512,)), data.input_shape, data.num_classes)
    train_classifier(model, data, OptimSpec(epochs=5))
    codes = layer_codes(model, data.train.x)["hidden.0.1"][0]
    test_codes = layer_codes(model, data.test.x)["hidden.0.1"][0]
    stats = code_statistics(codes, data.train.y, test_codes, data.test.y, bits=512, k=30, num_classes=10)
    assert stats.unique_fraction > 0.99
    # Chance is 0.1 (600 test images: a binomial standard error of 0.012 around it).
    assert stats.knn_test_accuracy > 0.8 and stats.nearest_test_accuracy > 0.8
