"""`SERDataCollator(pad_to_multiple_of=...)`: batches padded up to a few fixed lengths, masked, so models that take the
mask score every clip as with padding to the batch's longest clip."""

import numpy as np
import pytest
import torch
from conftest import TINY_WAV2VEC2
from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from hf_ser import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.data.collator import SERDataCollator, clip_features

HALF_SECOND = 8000
# clip lengths (samples at 16 kHz) that are no multiple of the bucket; the longest rounds up from 1.3 s to 1.5 s
LENGTHS = (20_800, 9_001, 14_377, 16_000)


def examples(extractor, lengths=LENGTHS):
    waveforms = [0.1 * np.random.default_rng(n).standard_normal(n).astype(np.float32) for n in lengths]
    features = clip_features(extractor, waveforms, 16000)
    return [{**dict(zip(features, values)), "label": i % 2} for i, values in enumerate(zip(*features.values()))]


def test_batches_are_padded_up_to_the_multiple_and_the_mask_marks_only_real_samples():
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    batch = SERDataCollator(extractor, pad_to_multiple_of=HALF_SECOND)(examples(extractor))
    dynamic = SERDataCollator(extractor)(examples(extractor))
    assert batch["input_values"].shape == (4, 24_000) and dynamic["input_values"].shape == (4, 20_800)
    assert batch["attention_mask"].sum(-1).tolist() == list(LENGTHS)
    assert torch.equal(batch["input_values"][:, :20_800], dynamic["input_values"])
    assert not batch["input_values"][:, 20_800:].any() and torch.equal(batch["labels"], dynamic["labels"])
    exact = SERDataCollator(extractor, pad_to_multiple_of=HALF_SECOND)(examples(extractor, (16_000, 8_000)))
    assert exact["input_values"].shape == (2, 16_000)  # already a multiple: no extra padding


def wav2vec2_layer_norm():
    torch.manual_seed(0)
    config = Wav2Vec2SERConfig(backbone_config=dict(TINY_WAV2VEC2), head_hidden_sizes=[16], num_labels=3)
    return Wav2Vec2SER(config).eval(), Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)


def ser_cnn():
    torch.manual_seed(0)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    return SERCNN(SERCNNConfig(num_labels=3)).eval(), extractor


@pytest.mark.parametrize("build", [wav2vec2_layer_norm, ser_cnn], ids=["wav2vec2-layer-norm", "ser-cnn"])
def test_bucketed_padding_gives_the_logits_of_padding_to_the_longest_clip(build):
    model, extractor = build()
    with torch.no_grad():
        dynamic = model(**SERDataCollator(extractor)(examples(extractor))).logits
        bucketed = model(**SERDataCollator(extractor, pad_to_multiple_of=HALF_SECOND)(examples(extractor))).logits
        coarse = model(**SERDataCollator(extractor, pad_to_multiple_of=4 * HALF_SECOND)(examples(extractor))).logits
    assert dynamic.shape == (4, 3) and dynamic.abs().max() > 1e-3
    torch.testing.assert_close(bucketed, dynamic, rtol=0, atol=1e-5)
    torch.testing.assert_close(coarse, dynamic, rtol=0, atol=1e-5)


def test_whisper_frames_are_not_rounded():
    extractor = WhisperFeatureExtractor(return_attention_mask=True)
    waveforms = [np.zeros(n, dtype=np.float32) for n in (16_000, 24_000)]
    features = clip_features(extractor, waveforms, 16000, whisper_clip_length=True)
    items = [dict(zip(features, values)) for values in zip(*features.values())]
    assert torch.equal(
        SERDataCollator(extractor, pad_to_multiple_of=HALF_SECOND)(items)["input_features"],
        SERDataCollator(extractor)(items)["input_features"],
    )
