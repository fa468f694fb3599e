"""Specification of SERCNN, the "Base" CNN with head-fusion attention (hf_ser/modeling_ser_cnn.py)."""

import ast
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from transformers import AutoModelForAudioClassification
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from hf_ser.models.configuration_ser_cnn import SERCNNConfig
from hf_ser.models.modeling_ser_cnn import SERCNN, split_into_segments

SR = 16000
# Default architecture with 4 labels: 8+8 first-conv channels, blocks (32, 48, 64, 80), 4 heads x 64.
DEFAULT_PARAMETER_COUNT = 171_844


@pytest.fixture(scope="module")
def model() -> SERCNN:
    torch.manual_seed(0)
    return SERCNN(SERCNNConfig(num_labels=4)).eval()


def waveform(seconds: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(round(seconds * SR), generator=generator) * 0.1


def padded_batch(waveforms: list, noise: float = 1.0) -> tuple:
    """Right-padded batch whose padding is loud noise, so a model that looked at it would show it."""
    longest = max(w.shape[0] for w in waveforms)
    batch = torch.randn(len(waveforms), longest) * noise
    mask = torch.zeros(len(waveforms), longest, dtype=torch.long)
    for row, w in enumerate(waveforms):
        batch[row, : w.shape[0]] = w
        mask[row, : w.shape[0]] = 1
    return batch, mask


@pytest.mark.parametrize("aggregate", [False, True])
def test_logits_have_one_row_per_utterance_for_any_length(model, aggregate):
    lengths = [100, 800, SR, round(2.5 * SR)]  # from under one STFT frame to more than two segments
    batch, mask = padded_batch([waveform(n / SR, seed=n) for n in lengths])
    with torch.no_grad():
        logits = model(batch, attention_mask=mask, aggregate_segments=aggregate).logits
    assert logits.shape == (4, 4)
    assert torch.isfinite(logits).all()


def test_labels_give_cross_entropy_loss(model):
    batch = torch.stack([waveform(1.0, seed=1), waveform(1.0, seed=2)])
    labels = torch.tensor([0, 3])
    with torch.no_grad():
        output = model(batch, labels=labels)
    assert output.loss is not None and output.loss.shape == ()
    assert torch.allclose(output.loss, F.cross_entropy(output.logits, labels))
    assert model(batch, return_dict=False)[0].shape == (2, 4)


def test_class_weights_weight_the_loss():
    torch.manual_seed(0)
    weights = [1.0, 2.0, 0.5, 4.0]
    weighted = SERCNN(SERCNNConfig(num_labels=4, class_weights=weights)).eval()
    batch = torch.stack([waveform(1.0, seed=3), waveform(1.0, seed=4)])
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        output = weighted(batch, labels=labels)
    expected = F.cross_entropy(output.logits, labels, weight=torch.tensor(weights))
    assert torch.allclose(output.loss, expected)
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        SERCNNConfig(num_labels=4, class_weights=[1.0, 2.0])


@pytest.mark.parametrize("aggregate", [False, True])
def test_padding_does_not_change_an_utterance_logits(model, aggregate):
    short, long = waveform(1.37, seed=5), waveform(3.2, seed=6)
    batch, mask = padded_batch([short, long])
    with torch.no_grad():
        together = model(batch, attention_mask=mask, aggregate_segments=aggregate).logits
        alone = torch.cat([model(w[None], aggregate_segments=aggregate).logits for w in (short, long)])
        unmasked = model(batch, aggregate_segments=aggregate).logits
    assert torch.allclose(together, alone, atol=1e-4)
    # The check has teeth: read without the mask, the noisy padding moves the short item's logits.
    assert (unmasked[0] - alone[0]).abs().max() > 1e-3


def test_split_into_segments_covers_the_waveform_with_overlapping_windows():
    audio = torch.arange(round(3.5 * SR), dtype=torch.float32)
    segments = split_into_segments(audio, SR, segment_seconds=2.0, hop_seconds=1.0)
    # Starts at 0 s and 1 s, then one more segment ending exactly at 3.5 s.
    assert segments.shape == (3, 2 * SR)
    assert segments[:, 0].tolist() == [0.0, SR, 1.5 * SR]
    assert segments[-1, -1] == audio[-1]
    exact = split_into_segments(torch.zeros(3 * SR), SR, 2.0, 1.0)
    assert exact.shape == (2, 2 * SR)
    short = split_into_segments(torch.ones(SR // 2), SR, 2.0, 1.0)
    assert short.shape == (1, SR // 2)
    with pytest.raises(ValueError, match="1-D"):
        split_into_segments(torch.zeros(2, SR), SR, 2.0, 1.0)


def test_segment_aggregation_is_the_mean_of_segment_logits(model):
    audio = waveform(3.5, seed=7)
    starts = [0, SR, round(1.5 * SR)]
    with torch.no_grad():
        aggregated = model(audio[None]).logits  # eval mode: config.aggregate_segments applies
        by_hand = torch.cat([model(audio[None, s : s + 2 * SR], aggregate_segments=False).logits for s in starts]).mean(
            dim=0, keepdim=True
        )
        whole = model(audio[None], aggregate_segments=False).logits
    assert torch.allclose(aggregated, by_hand, atol=1e-5)
    assert not torch.allclose(aggregated, whole, atol=1e-5)


def test_utterance_shorter_than_a_segment_is_scored_whole(model):
    audio = waveform(0.6, seed=8)
    with torch.no_grad():
        aggregated = model(audio[None], aggregate_segments=True).logits
        whole = model(audio[None], aggregate_segments=False).logits
    assert torch.allclose(aggregated, whole, atol=1e-6)


def test_training_mode_scores_whole_waveforms_unless_asked(model):
    audio = waveform(3.5, seed=9)[None]
    model.train()
    try:
        torch.manual_seed(0)
        default = model(audio).logits
        torch.manual_seed(0)
        whole = model(audio, aggregate_segments=False).logits
    finally:
        model.eval()
    assert torch.equal(default, whole)


def test_default_model_has_about_172k_parameters(model):
    assert model.num_parameters() == DEFAULT_PARAMETER_COUNT
    # Front-end tensors follow from the config and are not saved as weights.
    assert not any(key.startswith("front_end.") for key in model.state_dict())


def test_save_and_load_give_identical_logits(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    loaded = SERCNN.from_pretrained(tmp_path).eval()
    assert loaded.config.model_type == "ser-cnn"
    assert torch.equal(loaded.front_end.window, model.front_end.window)
    assert torch.equal(loaded.front_end.mel_filters, model.front_end.mel_filters)
    audio = torch.stack([waveform(2.5, seed=10), waveform(2.5, seed=11)])
    with torch.no_grad():
        assert torch.equal(loaded(audio).logits, model(audio).logits)


def test_checkpoint_loads_as_remote_code(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert {"configuration_ser_cnn.py", "modeling_ser_cnn.py"} <= {p.name for p in tmp_path.iterdir()}
    # Load the copies saved next to the weights, not hf_ser's own classes (which the Auto classes would pick).
    remote_class = get_class_from_dynamic_module("modeling_ser_cnn.SERCNN", str(tmp_path))
    assert remote_class.__module__.startswith("transformers_modules")
    loaded = remote_class.from_pretrained(tmp_path).eval()
    audio = waveform(1.2, seed=12)[None]
    with torch.no_grad():
        assert torch.equal(loaded(audio).logits, model(audio).logits)
    assert type(AutoModelForAudioClassification.from_pretrained(tmp_path)) is SERCNN


@pytest.mark.parametrize("name", ["configuration_ser_cnn.py", "modeling_ser_cnn.py"])
def test_model_files_import_only_torch_transformers_and_each_other(name):
    source = REPO_ROOT / "hf_ser" / "models" / name
    allowed = {"math", "typing", "torch", "transformers"}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            assert {alias.name.split(".")[0] for alias in node.names} <= allowed
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.module == "configuration_ser_cnn"
            else:
                assert node.module.split(".")[0] in allowed


@pytest.mark.parametrize(
    "overrides, channels, coefficients",
    [({}, 1, 26), ({"feature_type": "logmel", "use_deltas": True}, 3, 40), ({"use_deltas": True}, 3, 26)],
)
def test_feature_variants_run(overrides, channels, coefficients):
    torch.manual_seed(0)
    variant = SERCNN(SERCNNConfig(num_labels=3, **overrides)).eval()
    batch, mask = padded_batch([waveform(1.1, seed=13), waveform(0.7, seed=14)])
    with torch.no_grad():
        images, frame_lengths = variant.front_end(batch, mask.sum(-1))
        logits = variant(batch, attention_mask=mask).logits
        alone = variant(batch[1:, : mask[1].sum()]).logits
    assert images.shape == (2, channels, round(1.1 * SR) // 160 + 1, coefficients)
    assert frame_lengths.tolist() == [round(1.1 * SR) // 160 + 1, round(0.7 * SR) // 160 + 1]
    # Each channel is standardised over the item's valid frames.
    valid = images[1, :, : frame_lengths[1]]
    assert torch.allclose(valid.mean(dim=1), torch.zeros(channels, coefficients), atol=1e-4)
    assert images[1, :, frame_lengths[1] :].abs().max() == 0
    assert logits.shape == (2, 3)
    assert torch.allclose(logits[1], alone[0], atol=1e-4)


def test_spec_augment_masks_spans_of_frames_and_bands_in_training_only():
    torch.manual_seed(0)
    config = SERCNNConfig(num_labels=3, time_masks=2, time_mask_frames=30, frequency_masks=1, frequency_mask_bins=5)
    variant = SERCNN(config)
    batch, mask = padded_batch([waveform(1.5, seed=16), waveform(0.5, seed=17)])
    frames = [round(1.5 * SR) // 160 + 1, round(0.5 * SR) // 160 + 1]
    clean, _ = variant.eval().front_end(batch, mask.sum(-1))
    masked_frames, masked_bands = [], []
    for _ in range(20):
        masked, lengths = variant.train().front_end(batch, mask.sum(-1))
        assert lengths.tolist() == frames
        zeroed = (masked == 0) & (clean != 0)
        # whole frames (all coefficients, all channels) and whole bands (all frames) are zeroed, nothing else changes
        kept = ~zeroed
        assert torch.equal(masked[kept], clean[kept])
        frame_hit = zeroed[0, 0].all(dim=1)
        band_hit = zeroed[0, 0, : frames[0]].all(dim=0)
        assert frame_hit.sum() <= 2 * 30 and band_hit.sum() <= 5
        assert not zeroed[1, :, frames[1] :].any()  # padding stays padding
        masked_frames.append(int(frame_hit.sum()))
        masked_bands.append(int(band_hit.sum()))
    assert max(masked_frames) > 0 and max(masked_bands) > 0  # the masks are drawn, not empty
    assert len(set(masked_frames)) > 1  # and drawn anew for every batch
    with pytest.raises(ValueError, match="time_masks"):
        SERCNNConfig(time_masks=-1)


def test_mfcc_are_the_dct_of_the_log_mel_spectrogram():
    logmel = SERCNN(SERCNNConfig(feature_type="logmel", n_mfcc=40))
    dct = SERCNN(SERCNNConfig(feature_type="mfcc", n_mfcc=40)).front_end.dct
    # An orthonormal DCT keeps norms: its matrix is orthogonal when all coefficients are kept.
    assert torch.allclose(dct.T @ dct, torch.eye(40), atol=1e-5)
    assert logmel.front_end.mel_filters.shape == (257, 40)


def test_batch_of_one_trains(model):
    torch.manual_seed(0)
    trainable = SERCNN(SERCNNConfig(num_labels=4)).train()
    output = trainable(waveform(2.0, seed=15)[None], labels=torch.tensor([2]))
    output.loss.backward()
    assert output.logits.shape == (1, 4)
    assert trainable.classifier.weight.grad.abs().sum() > 0
    assert trainable.time_conv.weight.grad.abs().sum() > 0


def test_bad_config_values_are_rejected_with_the_key():
    with pytest.raises(ValueError, match="feature_type"):
        SERCNNConfig(feature_type="spectrogram")
    with pytest.raises(ValueError, match="pool_blocks"):
        SERCNNConfig(pool_blocks=[4])
    with pytest.raises(ValueError, match="n_mfcc"):
        SERCNNConfig(n_mfcc=60)


def test_checkpoint_loads_and_classifies_where_hf_ser_is_not_importable(model, tmp_path):
    from conftest import run_without_hf_ser
    from transformers import Wav2Vec2FeatureExtractor

    import hf_ser  # noqa: F401  (registers the Auto class that writes auto_map on save)

    model.eval().save_pretrained(tmp_path / "ckpt")
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(tmp_path / "ckpt")
    torch.manual_seed(5)
    audio = torch.randn(2, 24000)
    torch.save(audio, tmp_path / "audio.pt")
    torch.save(model(audio).logits, tmp_path / "expected.pt")
    last_line = run_without_hf_ser(
        f"""
        import torch
        from transformers import AutoModel, AutoModelForAudioClassification, pipeline
        folder = {str(tmp_path / "ckpt")!r}
        for auto_class in (AutoModel, AutoModelForAudioClassification):  # the README promises both
            model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            assert torch.allclose(model(torch.load({str(tmp_path / "audio.pt")!r})).logits,
                                  torch.load({str(tmp_path / "expected.pt")!r}), atol=1e-6)
        classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
        print(sorted(p["label"] for p in classifier(torch.randn(32000).numpy(), top_k=None)))
    """,
        cwd=tmp_path,
    )
    assert last_line == str(sorted(model.config.id2label.values()))
