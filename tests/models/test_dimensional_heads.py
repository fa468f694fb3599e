"""Dimensional emotion heads of both model families: `problem_type="regression"` gives one output per dimension
(named by `id2label`), the CCC or MSE loss, and a config that carries the task, so a saved model reloads with the
Auto classes and gives the same values (without hf-ser: tests/test_dimensional.py); audeering's published A/V/D layout
is a backbone to fine-tune."""

import json

import numpy as np
import pytest
import torch
from dimensional_look_alikes import tiny_dimensional_model
from published_layouts import CHECKPOINTS_DIR, LAYOUTS, build_layout, saved_tensors
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from hf_ser import SERCNNConfig, Wav2Vec2SERConfig
from hf_ser.arguments import ModelArguments
from hf_ser.training.model_building import build_feature_extractor, build_model


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


@pytest.mark.slow  # a 1024-wide encoder: about 10 s of CPU
@pytest.mark.skipif(not CHECKPOINTS_DIR.is_dir(), reason=f"published configs not found at {CHECKPOINTS_DIR}")
def test_the_published_audeering_avd_layout_is_a_backbone_for_a_dimensional_recipe(tmp_path):
    # audeering's wav2vec2-large-robust A/V/D model, random weights in its published layout (`wav2vec2.*` keys next to
    # its own regression head): the recipe's model keys build a dimensional model whose encoder is the saved one
    layout = next(layout for layout in LAYOUTS if layout.name == "wav2vec2-large-robust-msp-dim")
    folder = build_layout(layout, tmp_path / layout.name)
    model_args = ModelArguments(backbone=str(folder), head_hidden_sizes=[32], dimensional_loss="ccc")
    model = build_model(model_args, ["arousal", "valence", "dominance"], dimensional=True)
    assert (model.config.problem_type, model.config.num_labels) == ("regression", 3)
    on_disk = saved_tensors(folder)
    loaded = model.encoder.state_dict()
    assert len(loaded) > 20
    assert [key for key, tensor in loaded.items() if not torch.equal(on_disk[f"wav2vec2.{key}"], tensor)] == []
    assert not any(key.startswith("wav2vec2.") for key in set(on_disk) - {f"wav2vec2.{key}" for key in loaded})
    extractor = build_feature_extractor(model_args, 16000)
    batch = extractor(
        [np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 12000)],
        sampling_rate=16000,
        padding=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    output = model.train()(**batch, labels=torch.tensor([[3.0, 4.0, 3.5], [5.0, 2.0, 4.5]]))
    output.loss.backward()
    assert torch.isfinite(output.loss) and model.head[-1].weight.grad.abs().sum() > 0
    assert model.encoder.encoder.layers[0].attention.q_proj.weight.grad is not None  # the encoder fine-tunes
