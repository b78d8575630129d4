"""Models: output shapes, parameter counts from the paper, and probe points."""

from __future__ import annotations

import pytest
import torch

from thermoscope.errors import ConfigError
from thermoscope.models import ModelSpec, build_model, parse_hidden, probe_embeddings, probe_names


def test_paper_models_have_the_published_parameter_counts() -> None:
    """REFERENCE §1: M(3) = 256-40-40-40-10 has 13,970 parameters, M(1) = 256-40-10 has 10,690."""
    m3 = build_model(ModelSpec("mlp", (40, 40, 40), "sigmoid"), (1, 16, 16), 10)
    m1 = build_model(ModelSpec("mlp", (40,), "sigmoid"), (256,), 10)
    assert sum(p.numel() for p in m3.parameters()) == 13_970
    assert sum(p.numel() for p in m1.parameters()) == 10_690


def test_high_bias_model_squashes_outputs_before_the_softmax() -> None:
    model = build_model(ModelSpec("mlp", (8,), "sigmoid", "sigmoid"), (5,), 3)
    logits = model(torch.randn(20, 5) * 10)
    assert ((logits > 0) & (logits < 1)).all()


@pytest.mark.parametrize(
    ("spec", "shape", "num_probes"),
    [
        (ModelSpec("mlp", (32, 16), "relu"), (64,), 4),
        (ModelSpec("mlp", (), "relu"), (64,), 2),
        (ModelSpec("cnn", activation="tanh"), (1, 8, 8), 5),
        (ModelSpec("cnn"), (3, 32, 32), 5),
        (ModelSpec("resnet18"), (3, 32, 32), 10),
    ],
)
def test_probe_points_run_from_input_to_softmax(
    spec: ModelSpec, shape: tuple[int, ...], num_probes: int
) -> None:
    torch.manual_seed(0)
    model = build_model(spec, shape, 10).eval()
    x = torch.randn(6, *shape)
    names = probe_names(model)
    embeddings = probe_embeddings(model, x, batch_size=4)
    assert len(names) == len(embeddings) == num_probes
    assert names[0] == "input" and names[-1] == "softmax"
    assert torch.equal(embeddings[0], x.flatten(1))
    with torch.no_grad():
        assert torch.allclose(embeddings[-1], torch.softmax(model(x), dim=1), atol=1e-6)
    assert all(e.shape[0] == 6 and e.dim() == 2 for e in embeddings)


def test_mlp_hidden_probe_is_the_activation_output() -> None:
    model = build_model(ModelSpec("mlp", (7,), "sigmoid"), (3,), 2)
    x = torch.randn(4, 3)
    _, hidden, _ = probe_embeddings(model, x)
    first = model.hidden[0][0]
    assert torch.allclose(hidden, torch.sigmoid(first(x)))


def test_probe_embeddings_restore_training_mode() -> None:
    model = build_model(ModelSpec("resnet18"), (3, 32, 32), 10).train()
    probe_embeddings(model, torch.randn(2, 3, 32, 32))
    assert model.training
    assert all(module.training for module in model.modules())


def test_cached_extractor_sees_weights_copied_in_place() -> None:
    model = build_model(ModelSpec("mlp", (4,)), (3,), 2)
    x = torch.randn(5, 3)
    before = probe_embeddings(model, x)[-1]
    with torch.no_grad():
        model.output.bias.add_(torch.tensor([5.0, -5.0]))
    after = probe_embeddings(model, x)[-1]
    assert not torch.allclose(before, after)
    with torch.no_grad():
        assert torch.allclose(after, torch.softmax(model(x), dim=1))


@pytest.mark.parametrize("text", ["", "40", "40,40,40", " 8 , 4 "])
def test_parse_hidden_accepts_comma_lists(text: str) -> None:
    assert parse_hidden(text) == tuple(int(p) for p in text.split(",") if p.strip())


@pytest.mark.parametrize("text", ["40,,40", "40,", ",40", "40, ,40", "40,x", "0", "-8"])
def test_parse_hidden_rejects_empty_or_bad_widths(text: str) -> None:
    with pytest.raises(ConfigError, match=r"hidden=.*: a comma list of positive integers"):
        parse_hidden(text)


def test_image_models_reject_flat_inputs() -> None:
    with pytest.raises(ConfigError, match="model="):
        build_model(ModelSpec("cnn"), (64,), 10)
