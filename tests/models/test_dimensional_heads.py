"""Dimensional emotion heads of both model families: `problem_type="regression"` gives one output per dimension
(named by `id2label`), the CCC or MSE loss, and a config that carries the task, so a saved model reloads with the
Auto classes and gives the same values (without hf-ser: tests/test_dimensional.py)."""

import json

import pytest
import torch
from dimensional_look_alikes import tiny_dimensional_model
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from hf_ser import SERCNNConfig, Wav2Vec2SERConfig


@pytest.mark.parametrize("family", ["wav2vec2-ser", "ser-cnn"])
@pytest.mark.parametrize("dimensional_loss", ["ccc", "mse"])
def test_a_regression_head_has_one_output_per_dimension_and_trains_on_the_chosen_loss(family, dimensional_loss):
    model = tiny_dimensional_model(family, dimensional_loss).train()
    audio, targets = (
        torch.randn(4, 8000),
        torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.5, 3.5], [4.0, 1.0, 2.0], [3, 3, 3.0]]),
    )
    output = model(audio, labels=targets)
    assert output.logits.shape == (4, 3)
    values = output.logits.detach()
    if dimensional_loss == "mse":
        expected = ((values - targets) ** 2).mean()
    else:
        covariance = ((values - values.mean(0)) * (targets - targets.mean(0))).mean(0)
        spread = (
            values.var(0, unbiased=False) + targets.var(0, unbiased=False) + (values.mean(0) - targets.mean(0)) ** 2
        )
        expected = (1 - 2 * covariance / spread).mean()
    torch.testing.assert_close(output.loss.detach(), expected, rtol=1e-4, atol=1e-6)
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.dim() > 1)


def test_an_unknown_dimensional_loss_is_refused():
    with pytest.raises(ValueError, match="dimensional_loss='mae' is not one of"):
        Wav2Vec2SERConfig(dimensional_loss="mae")
    with pytest.raises(ValueError, match="dimensional_loss='mae' is not one of"):
        SERCNNConfig(dimensional_loss="mae")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Both families saved with a feature extractor, and the values they give two clips before saving."""
    folder = tmp_path_factory.mktemp("dimensional")
    audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    expected = {}
    for family in ("wav2vec2-ser", "ser-cnn"):
        model = tiny_dimensional_model(family).eval()
        model.save_pretrained(folder / family)
        with torch.no_grad():
            expected[family] = model(audio).logits
    return folder, audio, expected


@pytest.mark.parametrize("family", ["wav2vec2-ser", "ser-cnn"])
def test_a_saved_dimensional_model_carries_its_task_and_reloads_with_the_auto_classes(family, saved_models):
    folder, audio, expected = saved_models
    saved = json.loads((folder / family / "config.json").read_text())
    assert (saved["problem_type"], saved["dimensional_loss"], saved["id2label"]) == (
        "regression",
        "ccc",
        {"0": "arousal", "1": "valence", "2": "dominance"},
    )
    for auto_class in (AutoModel, AutoModelForAudioClassification):
        loaded = auto_class.from_pretrained(folder / family).eval()
        assert AutoConfig.from_pretrained(folder / family).problem_type == "regression"
        with torch.no_grad():
            assert torch.equal(loaded(audio).logits, expected[family])
