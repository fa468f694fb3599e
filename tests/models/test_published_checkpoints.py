"""The contract every backbone family keeps, checked on checkpoints in the exact layouts users download.

Each layout (tests/published_layouts.py) is a random-weight model built from a published `config.json`, shrunk to 2
encoder layers and saved from the class the Hub checkpoint was saved from. Per layout: `from_backbone` carries every
encoder tensor bit for bit from the saved file; the convolutional front end is frozen or trainable as the config says;
a clip's logits do not depend on what it is batched with; `pipeline("audio-classification")` equals a direct forward,
with and without hf_ser importable; `backbone_overrides` reach the encoder's config and are saved with the model.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import run_without_hf_ser
from published_layouts import CHECKPOINTS_DIR, LAYOUTS, build_layout, saved_tensors
from transformers import pipeline

from hf_ser import Wav2Vec2SER
from hf_ser.arguments import ModelArguments
from hf_ser.training.model_building import build_feature_extractor

pytestmark = pytest.mark.skipif(
    not CHECKPOINTS_DIR.is_dir(), reason=f"published configs not found at {CHECKPOINTS_DIR} (CI provides them)"
)
LABELS = {0: "anger", 1: "happiness", 2: "neutral", 3: "sadness"}
# Where hf_ser cannot be imported (remote code, a fresh interpreter each): one layout per family keeps it quick.
WITHOUT_HF_SER = {"wav2vec2-base-960h", "hubert-large-superb-er", "whisper-small", "wav2vec2-bert"}
# The 30 s path costs two 30 s forwards: checked on the smallest and largest width and on 128 mel bins.
SWITCH_LAYOUTS = {"whisper-tiny", "whisper-small", "whisper-large-v3-mels"}
CLIP_SAMPLES = (16000, 40000, 24000)  # 1 s, 2.5 s and 1.5 s: the first is padded by 1.5 s in a batch


@pytest.fixture(scope="module", params=LAYOUTS, ids=[layout.name for layout in LAYOUTS])
def layout_dir(request, tmp_path_factory):
    """One published layout at a time on disk (the Whisper ones are ~300 MB each), removed after its tests."""
    folder = build_layout(request.param, tmp_path_factory.mktemp("published") / request.param.name)
    yield request.param, folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ser_model(layout_dir):
    layout, folder = layout_dir
    model = Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS, head_dropout=0.0).eval()
    extractor = build_feature_extractor(ModelArguments(backbone=str(folder)), 16000)
    return model, extractor


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in CLIP_SAMPLES]


def checkpoint_key(layout, encoder_key: str) -> str:
    key = layout.encoder_prefix + encoder_key
    if layout.legacy_bin:  # torch's parametrized weight norm, as pickles saved before it existed name it
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
    return key


def test_from_backbone_carries_every_encoder_tensor_from_the_saved_file(layout_dir, ser_model):
    layout, folder = layout_dir
    model, _ = ser_model
    on_disk = saved_tensors(folder)
    loaded = model.encoder.state_dict()
    assert len(loaded) > 20
    differing = [key for key, tensor in loaded.items() if not torch.equal(on_disk[checkpoint_key(layout, key)], tensor)]
    assert differing == []


def test_feature_encoder_is_frozen_or_trainable_as_configured(layout_dir, ser_model):
    layout, folder = layout_dir
    model, _ = ser_model
    front = model.feature_encoder()
    if layout.name == "wav2vec2-bert":  # fbank input: no convolutional front end to freeze
        assert front is None
        return
    assert front is not None and not any(p.requires_grad for p in front.parameters())
    transformer_layers = [p for n, p in model.encoder.named_parameters() if ".layers." in f".{n}"]
    assert transformer_layers and all(p.requires_grad for p in transformer_layers)
    unfrozen = Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS, freeze_feature_encoder=False)
    assert all(p.requires_grad for p in unfrozen.feature_encoder().parameters())


def test_a_clip_gets_the_same_logits_alone_and_padded_in_a_batch(layout_dir, ser_model, clips):
    layout, _ = layout_dir
    model, extractor = ser_model
    padding = {} if layout.family == "whisper" else {"padding": True}  # Whisper's extractor pads every clip to 30 s
    with torch.no_grad():
        alone = [model(**extractor([clip], sampling_rate=16000, return_tensors="pt")).logits[0] for clip in clips]
        batch = extractor(clips, sampling_rate=16000, return_attention_mask=True, return_tensors="pt", **padding)
        assert (batch["attention_mask"] == 0).any()
        batched = model(**batch).logits
    for single, in_batch in zip(alone, batched):
        torch.testing.assert_close(in_batch, single, atol=1e-4, rtol=0)


def test_pipeline_equals_a_direct_forward_with_and_without_hf_ser(layout_dir, ser_model, clips, tmp_path):
    layout, _ = layout_dir
    model, extractor = ser_model
    model.save_pretrained(tmp_path / "run")
    extractor.save_pretrained(tmp_path / "run")
    clip = clips[1]
    with torch.no_grad():
        inputs = extractor([clip], sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
        expected = model(**inputs).logits.softmax(-1)[0]
    expected_by_label = {LABELS[i]: float(p) for i, p in enumerate(expected)}
    scores = {
        p["label"]: p["score"]
        for p in pipeline("audio-classification", model=str(tmp_path / "run"))(clip.copy(), top_k=None)
    }
    assert scores == pytest.approx(expected_by_label, abs=1e-5)

    if layout.name not in WITHOUT_HF_SER:
        return
    np.save(tmp_path / "clip.npy", clip)
    remote = run_without_hf_ser(
        f"""
        import json, numpy as np
        from transformers import pipeline
        classifier = pipeline("audio-classification", model={str(tmp_path / "run")!r}, trust_remote_code=True)
        print(json.dumps({{p["label"]: p["score"] for p in classifier(np.load({str(tmp_path / "clip.npy")!r}), top_k=None)}}))
    """,
        cwd=tmp_path,
    )
    assert json.loads(remote) == pytest.approx(expected_by_label, abs=1e-5)


def mel_frames_encoded(model, run):
    """Calls `run()` and returns its result with the mel frames each forward fed the encoder's first convolution."""
    seen = []
    hook = model.encoder.conv1.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[-1]))
    try:
        with torch.no_grad():
            result = run()
    finally:
        hook.remove()
    return result, seen


def test_whisper_pipeline_predict_and_evaluation_agree_at_clip_length(layout_dir, ser_model, clips, tmp_path):
    """The pipeline hands the model 30 s features (cropped inside to the clip), `predict` and evaluation prepare them
    at the clip's length: the same frames are encoded and the same probabilities come out."""
    import soundfile
    from datasets import Dataset

    from hf_ser.arguments import DataArguments
    from hf_ser.data.collator import SERDataCollator
    from hf_ser.data.transforms import AudioTransform
    from hf_ser.inference.predict import EmotionClassifier
    from hf_ser.models.modeling_wav2vec2_ser import whisper_clip_frames

    layout, _ = layout_dir
    if layout.family != "whisper":
        return
    model, extractor = ser_model
    model.save_pretrained(tmp_path / "run")
    extractor.save_pretrained(tmp_path / "run")
    clip = clips[1]
    expected_frames = whisper_clip_frames(-(-len(clip) // extractor.hop_length), 3000)
    classifier = pipeline("audio-classification", model=str(tmp_path / "run"))
    by_label, frames = mel_frames_encoded(
        classifier.model, lambda: {p["label"]: p["score"] for p in classifier(clip.copy(), top_k=None)}
    )
    piped = np.array([by_label[LABELS[i]] for i in range(len(LABELS))])
    assert frames == [expected_frames]

    predicted, frames = mel_frames_encoded(
        model, lambda: EmotionClassifier(model, feature_extractor=extractor).probabilities([clip])
    )
    assert frames == [expected_frames]
    soundfile.write(tmp_path / "clip.wav", clip, 16000, subtype="FLOAT")
    split = Dataset.from_dict({"path": [str(tmp_path / "clip.wav")], "label": [0]})
    split.set_transform(AudioTransform(extractor, DataArguments(), train=False, whisper_clip_length=True))
    batch = SERDataCollator(extractor)([split[0]])
    assert batch["input_features"].shape[-1] == expected_frames  # computed only that far
    evaluated, frames = mel_frames_encoded(model, lambda: model(**batch).logits.softmax(-1)[0].numpy())
    np.testing.assert_allclose(predicted[0], piped, atol=1e-5)
    np.testing.assert_allclose(evaluated, piped, atol=1e-5)


def test_whisper_30s_switch_gives_the_released_encoders_logits(layout_dir, ser_model, clips):
    """`whisper_clip_length=False` runs transformers' WhisperEncoder on 30 s features as before the switch existed;
    on a 2.5 s clip the clip-length path differs from it by the attention over 27.5 s of padding."""
    from hf_ser.models.modeling_wav2vec2_ser import masked_mean

    layout, _ = layout_dir
    if layout.name not in SWITCH_LAYOUTS:
        return
    model, extractor = ser_model
    features = extractor([clips[1]], sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
    clip_length, frames = mel_frames_encoded(model, lambda: model(**features).logits)
    assert frames[0] < 300
    model.config.whisper_clip_length = False
    try:
        released, frames = mel_frames_encoded(model, lambda: model(**features).logits)
    finally:
        model.config.whisper_clip_length = True
    assert frames == [3000]
    with torch.no_grad():
        hidden = model.encoder(features["input_features"]).last_hidden_state
        mask = model.frame_mask(hidden.shape[1], features["attention_mask"], 1, hidden.device)
        assert torch.equal(released, model.head(masked_mean(hidden, mask)))
    assert (clip_length - released).abs().max() > 1e-5


def test_backbone_overrides_reach_the_encoder_config_and_are_saved(layout_dir, tmp_path):
    layout, folder = layout_dir
    keys = {"whisper": {"encoder_layerdrop": 0.0, "dropout": 0.2}}.get(
        layout.family, {"layerdrop": 0.0, "mask_time_prob": 0.0}
    )
    model = Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS, backbone_overrides=keys)
    for key, value in keys.items():
        assert getattr(model.encoder.config, key) == value
    model.save_pretrained(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["backbone_config"]
    assert {key: saved[key] for key in keys} == keys
    with pytest.raises(ValueError, match="no setting 'layer_drop'"):
        Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS, backbone_overrides={"layer_drop": 0.0})


def test_a_checkpoint_without_encoder_weights_is_refused_naming_them(tmp_path):
    from safetensors.torch import load_file, save_file

    layout = next(layout for layout in LAYOUTS if layout.name == "whisper-tiny")
    folder = build_layout(layout, tmp_path / "whisper")
    tensors = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if "encoder.layers.1." not in k},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(ValueError, match=r"does not hold the weights of a WhisperEncoder: \d+ missing .*layers\.1\."):
        Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS)


def test_a_decoder_only_checkpoint_is_refused(tmp_path):
    """A CTC head without its encoder (e.g. a truncated download) must not pass as a backbone."""
    from safetensors.torch import load_file, save_file

    layout = next(layout for layout in LAYOUTS if layout.name == "wav2vec2-base-960h")
    folder = build_layout(layout, tmp_path / "w2v")
    tensors = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if k.startswith("lm_head")},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(ValueError, match="does not hold the weights of a Wav2Vec2Model"):
        Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS)


def test_the_backbone_overrides_recipe_key_reaches_random_and_pretrained_encoders(tmp_path):
    from hf_ser.arguments import parse_args
    from hf_ser.training.model_building import build_model

    layout = next(layout for layout in LAYOUTS if layout.name == "wav2vec2-base-960h")
    folder = build_layout(layout, tmp_path / "w2v")
    overrides = ["--backbone_overrides", '{"layerdrop": 0.0, "mask_time_prob": 0.0, "hidden_dropout": 0.2}']
    for source in (
        ["--backbone", str(folder)],
        ["--backbone_config", '{"model_type": "wav2vec2", "num_hidden_layers": 2}'],
    ):
        model_args, _, _ = parse_args([*source, *overrides, "--output_dir", str(tmp_path / "run")])
        config = build_model(model_args, list(LABELS.values())).config.backbone_config
        assert (config.layerdrop, config.mask_time_prob, config.hidden_dropout) == (0.0, 0.0, 0.2)


def test_onnx_of_a_group_norm_model_gives_each_clip_its_unpadded_result(clips, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the `onnx` extra")
    from hf_ser.inference.onnx_export import OnnxSERModel, export_onnx

    layout = next(layout for layout in LAYOUTS if layout.name == "wav2vec2-base-960h")
    folder = build_layout(layout, tmp_path / "w2v")
    model = Wav2Vec2SER.from_backbone(str(folder), id2label=LABELS).eval()
    extractor = build_feature_extractor(ModelArguments(backbone=str(folder)), 16000)
    info = export_onnx(model, tmp_path / "onnx", feature_extractor=extractor)
    assert info["parity"]["max_abs_diff"] <= 1e-4  # the export's own check compares clip by clip too
    batch = extractor(clips, sampling_rate=16000, return_attention_mask=True, padding=True, return_tensors="np")
    with torch.no_grad():
        alone = [
            model(**extractor([clip], sampling_rate=16000, return_tensors="pt")).logits[0].numpy() for clip in clips
        ]
    onnx_logits = OnnxSERModel(tmp_path / "onnx")(batch["input_values"], batch["attention_mask"])
    np.testing.assert_allclose(onnx_logits, np.stack(alone), atol=1e-4)


def test_a_missing_optional_extra_is_one_line_naming_the_install(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['onnxscript'] = None\n"  # as if the `onnx` extra were not installed
        "from hf_ser.cli import main\n"
        f"sys.exit(main(['export-onnx', {str(tiny_model_dir)!r}, {str(tmp_path / 'onnx')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "hf-ser export-onnx: onnxscript is not installed; it comes with the `onnx` extra: pip install 'hf-ser[onnx]'"
    )
