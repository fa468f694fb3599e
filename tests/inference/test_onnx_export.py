"""Specification of the ONNX export (hf_ser/onnx_export.py) and `hf-ser predict --backend onnx`.

Each architecture (and a Wav2Vec2SER with a Whisper encoder) is exported once per module (torch.export + ONNX
translation takes tens of seconds on 2 CPU cores), so the module is marked slow.
"""

import json
import logging
import os
import shutil
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import EMODB_DIR, TINY_LABELS, requires_emodb
from dimensional_look_alikes import DIMENSIONS, save_tiny_dimensional_model, write_clip
from transformers import WhisperFeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import ModelArguments
from hf_ser.cli import main as cli_main
from hf_ser.data.audio import load_audio
from hf_ser.data.demo_corpus import synthesize
from hf_ser.inference.onnx_export import LogitsOnly, OnnxSERModel, export_onnx
from hf_ser.inference.predict import EmotionClassifier
from hf_ser.training.model_building import build_feature_extractor

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4
ARCHITECTURES = ["wav2vec2-ser", "ser-cnn"]  # waveform inputs, dynamic time axis
WITH_WHISPER = ARCHITECTURES + ["whisper"]  # a Wav2Vec2SER with a Whisper encoder: log-Mel frames at clip length
WHISPER_PATHS = ["whisper", "whisper-30s"]  # ... and on the 30 s path (`whisper_clip_length: false`, fixed frames)
TINY_WHISPER = {
    "model_type": "whisper",
    "d_model": 16,
    "encoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "num_mel_bins": 8,
    "max_source_positions": 200,
}
WHISPER_FRAMES = 2 * TINY_WHISPER["max_source_positions"]  # what the encoder takes: 4 s at 10 ms per frame


def save_whisper_model(model_dir: Path, whisper_clip_length: bool) -> Path:
    """A saved tiny Wav2Vec2SER on a random Whisper encoder, with the WhisperFeatureExtractor hf-ser builds for it:
    a 4 s window instead of the released 30 s, so the test stays fast."""
    torch.manual_seed(0)
    config = Wav2Vec2SERConfig(
        backbone_config=dict(TINY_WHISPER),
        head_hidden_sizes=[16, 8],
        pooling="attentive_stats",
        whisper_clip_length=whisper_clip_length,
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={label: i for i, label in enumerate(TINY_LABELS)},
    )
    Wav2Vec2SER(config).eval().save_pretrained(model_dir)
    # the extractor a training run builds and saves for this encoder
    extractor = build_feature_extractor(
        ModelArguments(backbone_config=dict(TINY_WHISPER)), 16000, config.backbone_config
    )
    assert extractor.nb_max_frames == WHISPER_FRAMES
    extractor.save_pretrained(model_dir)
    return model_dir


@contextmanager
def recorded_exporter_logs():
    """What torch's exporter and onnx_ir log through their own loggers (torch's do not propagate to the root, so
    caplog never sees them), as a list of messages."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    loggers = [logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration", "onnx_ir")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, cnn_model_dir, tmp_path_factory) -> dict:
    """{architecture: (model folder, ONNX folder)}: wav2vec2 and Whisper through the CLI, SERCNN and Whisper's 30 s
    path through the Python API."""
    root = tmp_path_factory.mktemp("onnx")
    with recorded_exporter_logs() as records:
        assert cli_main(["export-onnx", str(tiny_model_dir), str(root / "wav2vec2")]) == 0
    (root / "exporter_log.json").write_text(json.dumps(records))
    export_onnx(cnn_model_dir, root / "cnn")
    whisper_dir = save_whisper_model(root / "whisper-model", whisper_clip_length=True)
    assert cli_main(["export-onnx", str(whisper_dir), str(root / "whisper")]) == 0
    whisper_30s_dir = save_whisper_model(root / "whisper-30s-model", whisper_clip_length=False)
    export_onnx(whisper_30s_dir, root / "whisper-30s")
    return {
        "wav2vec2-ser": (tiny_model_dir, root / "wav2vec2"),
        "ser-cnn": (cnn_model_dir, root / "cnn"),
        "whisper": (whisper_dir, root / "whisper"),
        "whisper-30s": (whisper_30s_dir, root / "whisper-30s"),
    }


def test_export_says_nothing_about_torchvision_or_ambiguous_attributes(exported):
    """torch's op registry logs `torchvision is not installed. Skipping torchvision::nms` (and three more) on every
    export, onnx_ir an "ambiguous attribute type" twice: nothing an hf-ser user can act on."""
    records = json.loads((exported["wav2vec2-ser"][1].parent / "exporter_log.json").read_text())
    assert not [message for message in records if "torchvision" in message or "Attribute type is ambiguous" in message]


def speech_like_waveforms(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    emotions = ["angry", "happy", "neutral", "sad"]
    return [
        synthesize(emotions[i % 4], rng.uniform(100, 220), (rng.uniform(450, 800), 1500.0), rng) for i in range(count)
    ]


def emodb_waveforms(count: int) -> list:
    paths = sorted((EMODB_DIR / "wav").glob("*.wav"))[:: 535 // count][:count]
    return [load_audio(path) for path in paths]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_export_writes_a_valid_graph_with_dynamic_batch_and_time_axes(exported, architecture):
    model_dir, onnx_dir = exported[architecture]
    assert {"model.onnx", "config.json", "preprocessor_config.json", "onnx_export.json"} <= {
        p.name for p in onnx_dir.iterdir()
    }
    graph = onnx.load(onnx_dir / "model.onnx")
    onnx.checker.check_model(graph)
    inputs = {i.name: i.type.tensor_type.shape.dim for i in graph.graph.input}
    assert list(inputs) == ["input_values", "attention_mask"]
    for dims in inputs.values():
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims)  # symbolic, not fixed sizes
    info = json.loads((onnx_dir / "onnx_export.json").read_text())
    assert info["model_type"] == architecture and info["min_samples"] > 0 and info["task"] == "categorical"
    assert info["feature_encoder_as_matmuls"] is False  # convolutions as MatMuls only for int8 (test_quantization)
    assert {entry.domain: entry.version for entry in graph.opset_import}[""] == info["opset"] == 18  # as recorded
    assert info["segment_averaging_outside_graph"] == (architecture == "ser-cnn")
    assert info["parity"]["max_abs_diff"] <= TOLERANCE
    assert (
        json.loads((onnx_dir / "config.json").read_text())["id2label"]
        == json.loads((model_dir / "config.json").read_text())["id2label"]
    )


def assert_graph_matches(
    reference: LogitsOnly, onnx_model: OnnxSERModel, inputs, attention_mask, outputs: int = len(TINY_LABELS)
) -> None:
    with torch.no_grad():
        expected = reference(inputs, attention_mask).numpy()
    actual = onnx_model.run_graph(inputs.numpy(), attention_mask.numpy())
    assert actual.shape == (inputs.shape[0], outputs)
    assert np.abs(actual - expected).max() <= TOLERANCE


def random_waveform_batches(shapes, seed: int, padded_from: int):
    """(input_values, attention_mask) of each (batch, samples) shape; the last row is padding from `padded_from`."""
    generator = torch.Generator().manual_seed(seed)
    for batch, samples in shapes:
        attention_mask = torch.ones(batch, samples, dtype=torch.long)
        attention_mask[-1, padded_from:] = 0
        yield torch.randn(batch, samples, generator=generator) * 0.2, attention_mask


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_per_input_logits_match_pytorch_at_other_batch_sizes_and_lengths(exported, architecture):
    """Shapes differ from the (2, 16000) example used for export: only dynamic axes can run them."""
    model_dir, onnx_dir = exported[architecture]
    reference = LogitsOnly(EmotionClassifier(model_dir).model)
    onnx_model = OnnxSERModel(onnx_dir)
    for input_values, attention_mask in random_waveform_batches(((1, 20_000), (4, 45_000)), seed=1, padded_from=30_000):
        assert_graph_matches(reference, onnx_model, input_values, attention_mask)


def whisper_graph_inputs(onnx_dir: Path) -> dict:
    """The dims of a valid Whisper graph's inputs, which are `input_features` and `attention_mask`."""
    graph = onnx.load(onnx_dir / "model.onnx")
    onnx.checker.check_model(graph)
    inputs = {i.name: i.type.tensor_type.shape.dim for i in graph.graph.input}
    assert list(inputs) == ["input_features", "attention_mask"]
    return inputs


def test_whisper_export_has_dynamic_batch_and_frame_axes_up_to_the_encoders_window(exported):
    _, onnx_dir = exported["whisper"]
    inputs = whisper_graph_inputs(onnx_dir)
    features, mask = inputs["input_features"], inputs["attention_mask"]
    assert features[1].dim_value == TINY_WHISPER["num_mel_bins"]
    for dim in (features[0], features[2], mask[0], mask[1]):  # batch and frames: symbolic
        assert dim.dim_param and not dim.dim_value
    info = json.loads((onnx_dir / "onnx_export.json").read_text())
    assert info["dynamic_axes"] == {
        "input_features": {"0": "batch", "2": "frames"},
        "attention_mask": {"0": "batch", "1": "frames"},
    }
    assert (info["num_mel_bins"], info["max_frames"]) == (TINY_WHISPER["num_mel_bins"], WHISPER_FRAMES)
    assert "num_frames" not in info and "min_samples" not in info
    assert [(check["batch"], check["frames"]) for check in info["parity"]["checks"]] == [(1, 154), (3, 328)]
    assert info["parity"]["max_abs_diff"] <= TOLERANCE


def test_whisper_export_on_the_30s_path_has_a_dynamic_batch_axis_and_the_encoders_fixed_frame_axis(exported):
    model_dir, onnx_dir = exported["whisper-30s"]
    inputs = whisper_graph_inputs(onnx_dir)
    mel_bins = TINY_WHISPER["num_mel_bins"]
    expected_fixed = {"input_features": [mel_bins, WHISPER_FRAMES], "attention_mask": [WHISPER_FRAMES]}
    for name, fixed in expected_fixed.items():
        dims = inputs[name]
        assert dims[0].dim_param and not dims[0].dim_value  # batch: symbolic
        assert [d.dim_value for d in dims[1:]] == fixed and not any(d.dim_param for d in dims[1:])
    info = json.loads((onnx_dir / "onnx_export.json").read_text())
    assert info["inputs"] == ["input_features", "attention_mask"]
    assert info["dynamic_axes"] == {"input_features": {"0": "batch"}, "attention_mask": {"0": "batch"}}
    assert (info["num_mel_bins"], info["num_frames"]) == (mel_bins, WHISPER_FRAMES) and "min_samples" not in info
    assert info["model_type"] == "wav2vec2-ser" and not info["segment_averaging_outside_graph"]
    assert [check["batch"] for check in info["parity"]["checks"]] == [1, 3]
    assert info["parity"]["max_abs_diff"] <= TOLERANCE
    extractor = WhisperFeatureExtractor.from_pretrained(onnx_dir)
    assert (extractor.feature_size, extractor.nb_max_frames) == (mel_bins, WHISPER_FRAMES)


def test_whisper_graph_matches_pytorch_at_other_batch_sizes_and_frame_counts_up_to_the_window(exported):
    model_dir, onnx_dir = exported["whisper"]
    onnx_model = OnnxSERModel(onnx_dir)
    reference = LogitsOnly(EmotionClassifier(model_dir).model, "input_features")
    generator = torch.Generator().manual_seed(1)
    for batch, frames in ((1, 40), (4, 212), (2, WHISPER_FRAMES)):
        features = torch.rand(batch, TINY_WHISPER["num_mel_bins"], frames, generator=generator) * 2 - 0.8
        attention_mask = torch.ones(batch, frames, dtype=torch.long)
        attention_mask[-1, frames // 2 :] = 0
        assert_graph_matches(reference, onnx_model, features, attention_mask)
    longer = np.zeros((1, TINY_WHISPER["num_mel_bins"], WHISPER_FRAMES + 2), dtype=np.float32)
    with pytest.raises(ValueError, match=f"at most {WHISPER_FRAMES} frames"):
        onnx_model.run_graph(longer, np.ones((1, WHISPER_FRAMES + 2)))


def test_whisper_graph_on_the_30s_path_matches_pytorch_and_refuses_other_frame_counts(exported):
    model_dir, onnx_dir = exported["whisper-30s"]
    onnx_model = OnnxSERModel(onnx_dir)
    assert onnx_model.input_name == "input_features"
    reference = LogitsOnly(EmotionClassifier(model_dir).model, "input_features")
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 4):
        features = torch.rand(batch, TINY_WHISPER["num_mel_bins"], WHISPER_FRAMES, generator=generator) * 2 - 0.8
        attention_mask = torch.ones(batch, WHISPER_FRAMES, dtype=torch.long)
        attention_mask[-1, 150:] = 0
        assert_graph_matches(reference, onnx_model, features, attention_mask)
    with pytest.raises(ValueError, match=f"exactly {WHISPER_FRAMES} frames"):
        onnx_model.run_graph(features[..., :300].numpy(), attention_mask[:, :300].numpy())


def test_folders_exported_before_input_names_were_recorded_run_as_waveform_graphs(exported, tmp_path):
    _, onnx_dir = exported["wav2vec2-ser"]
    old = tmp_path / "old"
    shutil.copytree(onnx_dir, old)
    info = json.loads((old / "onnx_export.json").read_text())
    del info["inputs"]
    (old / "onnx_export.json").write_text(json.dumps(info))
    input_values, attention_mask = np.random.default_rng(0).normal(size=(2, 20_000)) * 0.1, np.ones((2, 20_000))
    assert OnnxSERModel(old).input_name == "input_values"
    expected = OnnxSERModel(onnx_dir).run_graph(input_values, attention_mask)
    np.testing.assert_array_equal(OnnxSERModel(old).run_graph(input_values, attention_mask), expected)


def assert_backends_agree(exported, architecture, waveforms):
    model_dir, onnx_dir = exported[architecture]
    torch_backend, onnx_backend = EmotionClassifier(model_dir), EmotionClassifier(onnx_dir, backend="onnx")
    for batch in (waveforms[:1], waveforms[1:]):  # batch sizes 1 and len-1, different lengths
        expected, actual = torch_backend.logits(batch), onnx_backend.logits(batch)
        assert actual.shape == expected.shape == (len(batch), len(TINY_LABELS))
        assert np.abs(actual - expected).max() <= TOLERANCE


@pytest.mark.parametrize("architecture", ARCHITECTURES + WHISPER_PATHS)
def test_model_logits_match_pytorch_on_speech_like_audio(exported, architecture):
    """Whole-model evaluation output, SERCNN's segment averaging included (done outside the graph for ONNX)."""
    waveforms = speech_like_waveforms(4, seed=3)
    assert len({len(w) for w in waveforms}) == 4
    assert_backends_agree(exported, architecture, waveforms)


@requires_emodb()
@pytest.mark.parametrize("architecture", WITH_WHISPER)
def test_model_logits_match_pytorch_on_real_emodb_speech(exported, architecture):
    assert_backends_agree(exported, architecture, emodb_waveforms(4))


@pytest.mark.parametrize("architecture", WITH_WHISPER)
def test_predict_with_the_onnx_backend_gives_the_torch_backend_answer(exported, architecture, tmp_path, capsys):
    import soundfile

    model_dir, onnx_dir = exported[architecture]
    for index, waveform in enumerate(speech_like_waveforms(3, seed=5)):
        soundfile.write(tmp_path / f"clip{index}.wav", waveform, 16000)
    results = {}
    for backend, folder in (("torch", model_dir), ("onnx", onnx_dir)):
        argv = [
            "predict",
            str(folder),
            str(tmp_path),
            "--backend",
            backend,
            "--format",
            "json",
            "--no-progress",
            "--window",
            "1.0",
            "--hop",
            "0.5",
            "--batch-size",
            "2",
        ]
        assert cli_main(argv) == 0
        results[backend] = json.loads(capsys.readouterr().out)["predictions"]

    def table(predictions):
        rows = [p["probabilities"] for p in predictions]
        rows += [s["probabilities"] for p in predictions for s in p["segments"]]
        return np.array([[row[label] for label in TINY_LABELS] for row in rows])

    assert [p["file"] for p in results["onnx"]] == [p["file"] for p in results["torch"]]
    assert np.abs(table(results["onnx"]) - table(results["torch"])).max() <= TOLERANCE


def test_an_onnx_folder_is_predicted_under_onnxruntime_without_being_told_and_the_console_says_so(
    exported, tmp_path, capsys
):
    import soundfile

    model_dir, onnx_dir = exported["ser-cnn"]
    assert EmotionClassifier(onnx_dir).backend == "onnx" and EmotionClassifier(model_dir).backend == "torch"
    soundfile.write(tmp_path / "clip.wav", speech_like_waveforms(1, seed=2)[0], 16000)
    assert cli_main(["predict", str(onnx_dir), str(tmp_path / "clip.wav"), "--format", "json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"{onnx_dir} is an ONNX export (model.onnx from hf-ser export-onnx): using --backend onnx\n" in captured.err
    assert len(json.loads(captured.out)["predictions"]) == 1
    with pytest.raises(ValueError, match="--backend onnx"):  # asked for torch explicitly: refused with the reason
        EmotionClassifier(onnx_dir, backend="torch")
    with pytest.raises(FileNotFoundError, match="hf-ser export-onnx"):
        EmotionClassifier(model_dir, backend="onnx")


def test_whisper_models_with_a_feature_extractor_of_other_frames_are_refused_with_a_reason(tmp_path):
    whisper = {**TINY_WHISPER, "max_source_positions": 16}  # 32 frames; the extractor below pads to 3000 (30 s)
    model = Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=whisper, num_labels=2, head_hidden_sizes=[8]))
    with pytest.raises(ValueError, match="8 mel bins x 32 frames.*nb_max_frames=3000"):
        export_onnx(model, tmp_path / "out", feature_extractor=WhisperFeatureExtractor(feature_size=8))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("opset", [13, 99])
def test_an_opset_the_exporter_would_not_write_is_refused_before_exporting(opset, tiny_model_dir, tmp_path):
    # torch's dynamo exporter writes 18 when asked for 13; 99 is beyond what onnx knows
    with pytest.raises(
        ValueError, match=rf"--opset {opset}: hf-ser exports with torch's dynamo exporter, which writes opsets 18"
    ):
        export_onnx(tiny_model_dir, tmp_path / "onnx", opset=opset)
    assert not (tmp_path / "onnx").exists()


@pytest.fixture(scope="module")
def dimensional_exported(tmp_path_factory) -> dict:
    """{architecture: (model folder, ONNX folder)} of random-weight dimensional models (arousal, valence, dominance);
    Wav2Vec2SER through the CLI, SERCNN (segment averaging outside the graph) through the Python API."""
    root = tmp_path_factory.mktemp("dimensional-onnx")
    folders = {family: save_tiny_dimensional_model(family, root / family) for family in ARCHITECTURES}
    assert cli_main(["export-onnx", str(folders["wav2vec2-ser"]), str(root / "wav2vec2-ser-onnx")]) == 0
    export_onnx(folders["ser-cnn"], root / "ser-cnn-onnx")
    return {family: (folder, root / f"{family}-onnx") for family, folder in folders.items()}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_dimensional_export_gives_pytorchs_values_at_other_batch_sizes_and_lengths(
    dimensional_exported, architecture
):
    model_dir, onnx_dir = dimensional_exported[architecture]
    info = json.loads((onnx_dir / "onnx_export.json").read_text())
    assert info["task"] == "dimensional" and info["outputs"] == ["logits"]
    assert info["parity"]["max_abs_diff"] <= TOLERANCE
    config = json.loads((onnx_dir / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {str(i): d for i, d in DIMENSIONS.items()}
    reference = LogitsOnly(EmotionClassifier(model_dir).model)
    onnx_model = OnnxSERModel(onnx_dir)
    for input_values, attention_mask in random_waveform_batches(((1, 20_000), (3, 37_000)), seed=2, padded_from=25_000):
        # one value per dimension, no softmax in the graph
        assert_graph_matches(reference, onnx_model, input_values, attention_mask, outputs=len(DIMENSIONS))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_predict_with_the_onnx_backend_reports_a_dimensional_models_values_as_the_torch_backend(
    dimensional_exported, architecture, tmp_path, capsys
):
    model_dir, onnx_dir = dimensional_exported[architecture]
    for index in range(3):
        write_clip(tmp_path / f"clip{index}.wav", 1.0 + 1.5 * index, 4.0 - index, seed=index, seconds=1.2 + index / 2)
    outputs = {}
    for backend, folder in (("torch", model_dir), ("onnx", onnx_dir)):
        argv = ["predict", str(folder), str(tmp_path), "--backend", backend, "--format", "json", "--no-progress"]
        assert cli_main([*argv, "--window", "1.0", "--hop", "0.5", "--batch-size", "2"]) == 0
        outputs[backend] = json.loads(capsys.readouterr().out)
    torch_output, onnx_output = outputs["torch"], outputs["onnx"]
    assert onnx_output["dimensions"] == torch_output["dimensions"] == list(DIMENSIONS.values())
    assert [p["file"] for p in onnx_output["predictions"]] == [p["file"] for p in torch_output["predictions"]]

    def values(output) -> np.ndarray:
        rows = [p for p in output["predictions"]] + [s for p in output["predictions"] for s in p["segments"]]
        assert not any("label" in row or "probabilities" in row for row in rows)  # values, not class scores
        return np.array([[row["dimensions"][name] for name in DIMENSIONS.values()] for row in rows])

    assert values(onnx_output).shape == values(torch_output).shape and len(values(torch_output)) > 3
    assert np.abs(values(onnx_output) - values(torch_output)).max() <= TOLERANCE
