import pytest
import torch
from conftest import run_without_hf_ser
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    Wav2Vec2FeatureExtractor,
    pipeline,
)

import hf_ser
from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.models.modeling_wav2vec2_ser import SERHead

LABELS = {0: "anger", 1: "happiness", 2: "neutral", 3: "sadness"}


def make_model(backbone_config, **kwargs):
    config = Wav2Vec2SERConfig(
        backbone_config=backbone_config, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **kwargs
    )
    torch.manual_seed(0)
    return Wav2Vec2SER(config)


def test_seed_head_has_the_seeds_parameter_count():
    head = SERHead(1024, [512, 256], num_labels=4, dropout=0.3)
    assert sum(p.numel() for p in head.parameters()) == 658_692
    kinds = [type(layer).__name__ for layer in head]
    assert kinds == ["Linear", "SafeBatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]


def test_model_head_matches_seed_at_large_hidden_size():
    config = Wav2Vec2SERConfig(backbone_config={"model_type": "wav2vec2", "hidden_size": 1024}, num_labels=4)
    head = SERHead(config.encoder_hidden_size, config.head_hidden_sizes, config.num_labels, config.head_dropout)
    assert sum(p.numel() for p in head.parameters()) == 658_692


@pytest.mark.parametrize("pooling", ["mean", "attentive_stats"])
def test_padding_does_not_change_an_items_logits(tiny_backbone_config, pooling):
    # Layer-norm encoders take the mask, so padding is invisible. Group-norm ones (wav2vec2-base) normalise over the
    # padded signal by design and are trained without masks; only their pooling ignores the padded frames.
    model = make_model(tiny_backbone_config, pooling=pooling).eval()
    audio = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    audio[1, 9000:] = 0.0  # what the collator puts there
    batched = model(audio, attention_mask=mask).logits
    alone = model(audio[1:, :9000]).logits
    assert torch.allclose(batched[1], alone[0], atol=1e-5)


def test_group_norm_encoder_gets_no_attention_mask(tiny_backbone_config):
    seen = {}
    model = make_model({**tiny_backbone_config, "feat_extract_norm": "group", "do_stable_layer_norm": False})
    model.encoder.register_forward_pre_hook(lambda m, a, k: seen.update(k), with_kwargs=True)
    model.eval()(torch.randn(2, 8000), attention_mask=torch.ones(2, 8000, dtype=torch.long))
    assert seen["attention_mask"] is None
    layer_model = make_model(tiny_backbone_config)
    layer_model.encoder.register_forward_pre_hook(lambda m, a, k: seen.update(k), with_kwargs=True)
    layer_model.eval()(torch.randn(2, 8000), attention_mask=torch.ones(2, 8000, dtype=torch.long))
    assert seen["attention_mask"] is not None


def test_loss_and_class_weights(tiny_backbone_config):
    model = make_model(tiny_backbone_config, class_weights=[1.0, 2.0, 1.0, 0.5]).eval()
    out = model(torch.randn(3, 8000), labels=torch.tensor([0, 1, 3]))
    expected = torch.nn.functional.cross_entropy(
        out.logits, torch.tensor([0, 1, 3]), weight=torch.tensor([1.0, 2.0, 1.0, 0.5])
    )
    assert torch.allclose(out.loss, expected)
    with pytest.raises(ValueError, match="class_weights"):
        Wav2Vec2SERConfig(backbone_config=tiny_backbone_config, num_labels=4, class_weights=[1.0])


def test_training_batch_of_one_uses_running_statistics(tiny_backbone_config):
    model = make_model(tiny_backbone_config).train()
    batch_norm = model.head[1]
    before = batch_norm.running_mean.clone()
    out = model(torch.randn(1, 8000), labels=torch.tensor([2]))
    out.loss.backward()
    assert torch.equal(batch_norm.running_mean, before)
    assert model.head[0].weight.grad is not None


def test_weighted_layer_sum_learns_layer_weights(tiny_backbone_config):
    model = make_model(tiny_backbone_config, use_weighted_layer_sum=True).train()
    assert model.layer_weights.shape == (tiny_backbone_config["num_hidden_layers"] + 1,)
    model(torch.randn(2, 8000), labels=torch.tensor([0, 1])).loss.backward()
    assert model.layer_weights.grad is not None and model.layer_weights.grad.abs().sum() > 0


# One transformer layer on two convolutions: the size every encoder family below shares.
_ONE_LAYER_ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16],
    "conv_stride": [5, 4],
    "conv_kernel": [10, 4],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


@pytest.mark.parametrize(
    "backbone",
    [
        {**_ONE_LAYER_ENCODER, "model_type": "hubert"},
        {**_ONE_LAYER_ENCODER, "model_type": "wavlm", "num_buckets": 32},
        {**_ONE_LAYER_ENCODER, "model_type": "data2vec-audio", "num_conv_pos_embeddings": 4, "conv_pos_kernel_size": 4},
    ],
    ids=["hubert", "wavlm", "data2vec-audio"],
)
def test_other_encoder_families(backbone):
    model = make_model(backbone).eval()
    assert model(torch.randn(2, 8000)).logits.shape == (2, 4)


def test_whisper_encoder_with_log_mel_features(tmp_path):
    from hf_ser.arguments import ModelArguments
    from hf_ser.training.model_building import build_feature_extractor

    backbone = {
        "model_type": "whisper",
        "d_model": 32,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "num_mel_bins": 80,
        "max_source_positions": 100,
    }
    model = make_model(backbone).eval()
    extractor = build_feature_extractor(ModelArguments(backbone_config=backbone), 16000, model.config.backbone_config)
    features = extractor(
        [torch.randn(8000).numpy(), torch.randn(16000).numpy()],
        sampling_rate=16000,
        return_attention_mask=True,
        return_tensors="pt",
    )
    assert features["input_features"].shape == (2, 80, 200)
    out = model(input_features=features["input_features"], attention_mask=features["attention_mask"])
    assert out.logits.shape == (2, 4)
    # saved with a run and loaded back, the extractor gives the same features (it stores only whole seconds)
    extractor.save_pretrained(tmp_path)
    reloaded = AutoFeatureExtractor.from_pretrained(tmp_path)(
        [torch.randn(8000).numpy()], sampling_rate=16000, return_attention_mask=True, return_tensors="pt"
    )
    assert reloaded["input_features"].shape == (1, 80, 200)
    with pytest.raises(ValueError, match="max_source_positions=16 gives Whisper inputs of 0.32 s.*multiple of 50"):
        build_feature_extractor(
            ModelArguments(backbone_config={**backbone, "max_source_positions": 16}),
            16000,
            make_model({**backbone, "max_source_positions": 16}).config.backbone_config,
        )


def save_checkpoint(model, folder):
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)


def test_checkpoint_loads_with_hf_ser_and_auto_classes(tiny_backbone_config, tmp_path):
    model = make_model(tiny_backbone_config).eval()
    save_checkpoint(model, tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "configuration_wav2vec2_ser.py",
        "modeling_wav2vec2_ser.py",
    } <= files
    config = AutoConfig.from_pretrained(tmp_path)
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForAudioClassification"}
    audio = torch.randn(2, 12000)
    expected = model(audio).logits
    for auto_class in (AutoModel, AutoModelForAudioClassification):
        loaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(loaded) is Wav2Vec2SER
        assert torch.equal(loaded(audio).logits, expected)


def test_checkpoint_loads_without_hf_ser_via_remote_code(tiny_backbone_config, tmp_path):
    model = make_model(tiny_backbone_config).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    torch.manual_seed(1)
    audio = torch.randn(2, 12000)
    torch.save(audio, tmp_path / "audio.pt")
    torch.save(model(audio).logits, tmp_path / "expected.pt")
    last_line = run_without_hf_ser(
        f"""
        import torch
        from transformers import AutoModel, AutoModelForAudioClassification, pipeline
        audio, expected = torch.load({str(tmp_path / "audio.pt")!r}), torch.load({str(tmp_path / "expected.pt")!r})
        for auto_class in (AutoModel, AutoModelForAudioClassification):
            model = auto_class.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            assert torch.equal(model(audio).logits, expected)
        classifier = pipeline("audio-classification", model={str(tmp_path / "ckpt")!r}, trust_remote_code=True)
        print(sorted(p["label"] for p in classifier(audio[0].numpy(), top_k=None)))
    """,
        cwd=tmp_path,
    )
    assert last_line == str(sorted(LABELS.values()))


def test_pipeline_returns_label_names(tiny_backbone_config, tmp_path):
    model = make_model(tiny_backbone_config).eval()
    save_checkpoint(model, tmp_path)
    classifier = pipeline("audio-classification", model=str(tmp_path))
    predictions = classifier(torch.randn(16000).numpy(), top_k=None)
    assert {p["label"] for p in predictions} == set(LABELS.values())
    assert abs(sum(p["score"] for p in predictions) - 1.0) < 1e-4


def test_hf_ser_registers_its_model_types():
    assert AutoConfig.for_model("wav2vec2-ser").__class__ is Wav2Vec2SERConfig
    assert hf_ser.SERCNNConfig.model_type == "ser-cnn"


def test_from_backbone_configures_the_head_from_its_keywords(tiny_backbone_config, tmp_path):
    """Which encoder tensors load and what is frozen is the published-layout contract
    (tests/models/test_published_checkpoints.py); here: the keywords that configure the head and labels."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    encoder = Wav2Vec2Model(Wav2Vec2Config(**{k: v for k, v in tiny_backbone_config.items() if k != "model_type"}))
    encoder.save_pretrained(tmp_path / "encoder")
    model = Wav2Vec2SER.from_backbone(
        str(tmp_path / "encoder"), id2label=LABELS, head_dropout=0.6, head_hidden_sizes=[16, 8]
    )
    assert model.config.head_dropout == 0.6 and model.config.head_hidden_sizes == [16, 8]
    assert model.config.id2label == LABELS and model.config.label2id["sadness"] == 3
    assert model.head[-1].out_features == 4


# ---- Whisper at the clip's length ------------------------------------------------------------------------------

TINY_WHISPER_30S = {  # released Whisper's input side (80 mel bins, 1500 positions = 30 s), a tiny Transformer
    "model_type": "whisper",
    "d_model": 16,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "num_mel_bins": 80,
}


def whisper_pair():
    """The same weights on the clip-length path (the default) and on the 30 s path (`whisper_clip_length=False`)."""
    clip = make_model(TINY_WHISPER_30S, head_hidden_sizes=[8]).eval()
    full = make_model(TINY_WHISPER_30S, head_hidden_sizes=[8], whisper_clip_length=False).eval()
    full.load_state_dict(clip.state_dict())
    return clip, full


def whisper_batch(waveforms, clip_length: bool) -> dict:
    from transformers import WhisperFeatureExtractor

    from hf_ser.data.collator import SERDataCollator, clip_features

    extractor = WhisperFeatureExtractor(return_attention_mask=True)
    features = clip_features(extractor, waveforms, 16000, None, clip_length)
    return SERDataCollator(extractor)([dict(zip(features, values)) for values in zip(*features.values())])


def frames_encoded(model, batch) -> tuple[torch.Tensor, int]:
    """Logits, and the mel frames that reached the encoder's first convolution."""
    seen = []
    hook = model.encoder.conv1.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        logits = model(**batch).logits
    hook.remove()
    return logits, seen[0]


WAVEFORMS = [0.1 * torch.randn(n, generator=torch.Generator().manual_seed(n)).numpy() for n in (16000, 40000, 24001)]


def test_whisper_features_at_clip_length_are_the_first_frames_of_the_30s_features():
    from hf_ser.models.modeling_wav2vec2_ser import whisper_clip_frames

    padded, clip_length = whisper_batch(WAVEFORMS, False), whisper_batch(WAVEFORMS, True)
    assert padded["input_features"].shape == (3, 80, 3000)
    frames = whisper_clip_frames(-(-40000 // 160), 3000)  # the longest clip's 250 frames + 3, rounded up to even
    assert frames == 254 and clip_length["input_features"].shape == (3, 80, frames)
    assert torch.equal(clip_length["input_features"], padded["input_features"][..., :frames])
    assert torch.equal(clip_length["attention_mask"], padded["attention_mask"][:, :frames])
    # extracted one clip at a time, then padded together by the collator: the same batch
    from hf_ser.data.collator import SERDataCollator, pad_mel_frames

    alone = [whisper_batch([waveform], True) for waveform in WAVEFORMS]
    examples = [{key: value[0].numpy() for key, value in batch.items()} for batch in alone]
    assert len({example["input_features"].shape[-1] for example in pad_mel_frames(examples)}) == 1
    collated = SERDataCollator(__import__("transformers").WhisperFeatureExtractor())(examples)
    assert torch.equal(collated["input_features"], clip_length["input_features"])


def test_whisper_encodes_only_the_frames_the_batchs_longest_clip_needs():
    clip, _ = whisper_pair()
    from_clip_length, frames = frames_encoded(clip, whisper_batch(WAVEFORMS, True))
    from_30s, cropped = frames_encoded(clip, whisper_batch(WAVEFORMS, False))  # e.g. the pipeline's features
    assert frames == cropped == 254
    torch.testing.assert_close(from_30s, from_clip_length, atol=0, rtol=0)


def test_whisper_at_clip_length_gives_a_clip_the_same_logits_alone_and_in_a_batch():
    clip, _ = whisper_pair()
    batched, _ = frames_encoded(clip, whisper_batch(WAVEFORMS, True))
    for index, waveform in enumerate(WAVEFORMS):
        alone, frames = frames_encoded(clip, whisper_batch([waveform], True))
        assert frames < 254 or index == 1  # the shorter clips alone are encoded with fewer frames
        torch.testing.assert_close(alone[0], batched[index], atol=1e-5, rtol=0)


def test_whisper_30s_switch_reproduces_the_released_encoder_path_exactly():
    from hf_ser.models.modeling_wav2vec2_ser import masked_mean

    clip, full = whisper_pair()
    padded = whisper_batch(WAVEFORMS, False)
    logits, frames = frames_encoded(full, padded)
    assert frames == 3000
    with torch.no_grad():  # what Wav2Vec2SER computed before clip-length encoding existed
        hidden = full.encoder(padded["input_features"]).last_hidden_state
        mask = full.frame_mask(hidden.shape[1], padded["attention_mask"], 3, hidden.device)
        expected = full.head(masked_mean(hidden, mask))
    assert torch.equal(logits, expected)
    # the 30 s path attends over the padding, the clip-length path does not: on short clips they differ
    clip_logits, _ = frames_encoded(clip, whisper_batch(WAVEFORMS, True))
    assert (clip_logits - logits).abs().max() > 1e-4
    # a clip of the whole 30 s window has no padding: both paths are the same computation, hidden states included
    long_clip = whisper_batch([0.1 * torch.randn(480_000, generator=torch.Generator().manual_seed(1)).numpy()], True)
    assert long_clip["input_features"].shape[-1] == 3000
    with torch.no_grad():
        a, b = clip(**long_clip, output_hidden_states=True), full(**long_clip, output_hidden_states=True)
    assert torch.equal(a.logits, b.logits)
    assert len(a.hidden_states) == len(b.hidden_states) == 3
    assert all(torch.equal(x, y) for x, y in zip(a.hidden_states, b.hidden_states))


def test_whisper_inputs_beyond_the_positional_embeddings_are_refused():
    clip, _ = whisper_pair()
    with pytest.raises(ValueError, match="3002 mel frames; this Whisper encoder has positional embeddings for 3000"):
        clip(input_features=torch.zeros(1, 80, 3002))
