"""Specification of the feature encoder computed with MatMuls (hf_ser/inference/conv_matmul.py): what
`export-onnx --quantize int8` exports so that int8 covers the wav2vec2 family's strided convolutions too."""

import pytest
import torch
from conftest import TINY_WAV2VEC2
from published_layouts import CHECKPOINTS_DIR, LAYOUTS, published_config
from torch import nn
from transformers import AutoModel, HubertConfig, Wav2Vec2Config, WavLMConfig

from hf_ser import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.inference.conv_matmul import MatMulFeatureEncoder, feature_encoder_as_matmuls, strided_views_matmul

# the tiny encoder's three convolutions, with bias, kernels 10/4/4 and strides 5/4/4, and a kernel that exceeds its
# stride and one that equals it, as wav2vec2-base's 3/2 and 2/2
ENCODERS = {
    "wav2vec2, layer norm": Wav2Vec2Config(**{**TINY_WAV2VEC2, "conv_bias": True}),
    "wav2vec2, group norm (base)": Wav2Vec2Config(
        **{**TINY_WAV2VEC2, "feat_extract_norm": "group", "do_stable_layer_norm": False}
        | {"conv_kernel": [10, 3, 2], "conv_stride": [5, 2, 2]},
    ),
    "hubert": HubertConfig(**{**TINY_WAV2VEC2, "model_type": "hubert"}),
    "wavlm": WavLMConfig(**{**TINY_WAV2VEC2, "model_type": "wavlm", "conv_bias": True}),
}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_the_matmul_feature_encoder_gives_the_convolutions_output_at_any_length(name):
    torch.manual_seed(0)
    encoder = AutoModel.from_config(ENCODERS[name]).feature_extractor.eval()
    for module in encoder.modules():  # norms with non-trivial affine parameters
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    rewritten = MatMulFeatureEncoder(encoder)
    for samples in (400, 16_001, 23_457):  # odd lengths: the last frame of every layer drops a remainder
        waveforms = torch.randn(2, samples)
        with torch.no_grad():
            expected, actual = encoder(waveforms), rewritten(waveforms)
        assert actual.shape == expected.shape and expected.shape[-1] > 0
        assert (actual - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max())


def test_a_strided_convolution_is_one_matmul_of_its_shifted_views():
    torch.manual_seed(1)
    conv = nn.Conv1d(6, 5, kernel_size=3, stride=2, bias=True)
    hidden = torch.randn(2, 17, 6)  # (batch, time, channels)
    weight = conv.weight.detach().permute(2, 1, 0).reshape(18, 5)
    with torch.no_grad():
        expected = conv(hidden.transpose(1, 2)).transpose(1, 2)
        actual = strided_views_matmul(hidden, conv, weight)
    assert actual.shape == expected.shape == (2, 8, 5)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)


def test_the_rewrite_lasts_only_within_the_block_and_leaves_other_models_alone():
    model = Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=dict(TINY_WAV2VEC2), num_labels=2, head_hidden_sizes=[8]))
    original = model.encoder.feature_extractor
    waveform = torch.randn(1, 8000)
    with torch.no_grad():
        expected = model.eval()(waveform).logits
        with feature_encoder_as_matmuls(model) as rewritten:
            assert rewritten and isinstance(model.encoder.feature_extractor, MatMulFeatureEncoder)
            torch.testing.assert_close(model(waveform).logits, expected, atol=1e-5, rtol=1e-5)
    assert model.encoder.feature_extractor is original
    assert set(model.state_dict()) == set(type(model)(model.config).state_dict())  # no new weights saved
    cnn = SERCNN(SERCNNConfig(block_channels=[8], pool_blocks=[0], attention_heads=2, attention_hidden=8))
    with feature_encoder_as_matmuls(cnn) as rewritten:
        assert not rewritten


# one layout per published config.json with a convolutional feature encoder
PUBLISHED_CONV_ENCODERS = list(
    {layout.source: layout for layout in LAYOUTS if layout.family in ("group", "layer") and layout.source}.values()
)


@pytest.mark.skipif(not CHECKPOINTS_DIR.is_dir(), reason=f"published configs not found at {CHECKPOINTS_DIR}")
@pytest.mark.parametrize("layout", PUBLISHED_CONV_ENCODERS, ids=[layout.name for layout in PUBLISHED_CONV_ENCODERS])
def test_the_rewrite_is_exact_on_the_published_feature_encoders(layout):
    """What int8 export rewrites in users' checkpoints: the 7-layer, 512-channel feature encoders of the published
    wav2vec2-base, WavLM, HuBERT-large and audEERING configs (group and layer norm, conv bias or not)."""
    torch.manual_seed(2)
    encoder = AutoModel.from_config(published_config(layout)).feature_extractor.eval()
    rewritten = MatMulFeatureEncoder(encoder)
    waveforms = torch.randn(2, 16_037)
    with torch.no_grad():
        expected, actual = encoder(waveforms), rewritten(waveforms)
    assert actual.shape == expected.shape == (2, 512, 49)
    assert (actual - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max())
