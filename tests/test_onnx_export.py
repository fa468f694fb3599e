"""Specification of the ONNX export (hf_ser/onnx_export.py) and `hf-ser predict --backend onnx`.

Each architecture is exported once per module (torch.export + ONNX translation takes tens of seconds on 2 CPU cores),
so the module is marked slow.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor

from hf_ser import SERCNN, SERCNNConfig
from hf_ser.audio import load_audio
from hf_ser.cli import main as cli_main
from hf_ser.demo_corpus import synthesize
from hf_ser.onnx_export import LogitsOnly, OnnxSERModel, export_onnx
from hf_ser.predict import EmotionClassifier

from conftest import EMODB_DIR, TINY_LABELS, requires_emodb

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4
ARCHITECTURES = ["wav2vec2-ser", "ser-cnn"]


@pytest.fixture(scope="module")
def cnn_model_dir(tmp_path_factory) -> Path:
    """A saved small SERCNN that averages 1 s segments (0.5 s hop) in evaluation, as the paper's protocol does."""
    torch.manual_seed(0)
    config = SERCNNConfig(
        block_channels=[8, 16], pool_blocks=[0], attention_heads=2, attention_hidden=16,
        segment_seconds=1.0, segment_hop_seconds=0.5,
        id2label=dict(enumerate(TINY_LABELS)), label2id={label: i for i, label in enumerate(TINY_LABELS)},
    )
    model = SERCNN(config)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so evaluation mode differs from a fresh model
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model_dir = tmp_path_factory.mktemp("cnn") / "model"
    model.eval().save_pretrained(model_dir)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def exported(tiny_model_dir, cnn_model_dir, tmp_path_factory) -> dict:
    """{architecture: (model folder, ONNX folder)}: wav2vec2 through the CLI, SERCNN through the Python API."""
    root = tmp_path_factory.mktemp("onnx")
    assert cli_main(["export-onnx", str(tiny_model_dir), str(root / "wav2vec2")]) == 0
    export_onnx(cnn_model_dir, root / "cnn")
    return {"wav2vec2-ser": (tiny_model_dir, root / "wav2vec2"), "ser-cnn": (cnn_model_dir, root / "cnn")}


def speech_like_waveforms(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    emotions = ["angry", "happy", "neutral", "sad"]
    return [synthesize(emotions[i % 4], rng.uniform(100, 220), (rng.uniform(450, 800), 1500.0), rng) for i in range(count)]


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
    assert info["model_type"] == architecture and info["min_samples"] > 0
    assert info["segment_averaging_outside_graph"] == (architecture == "ser-cnn")
    assert info["parity"]["max_abs_diff"] <= TOLERANCE
    assert json.loads((onnx_dir / "config.json").read_text())["id2label"] == json.loads(
        (model_dir / "config.json").read_text()
    )["id2label"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_per_input_logits_match_pytorch_at_other_batch_sizes_and_lengths(exported, architecture):
    """Shapes differ from the (2, 16000) example used for export: only dynamic axes can run them."""
    model_dir, onnx_dir = exported[architecture]
    reference = LogitsOnly(EmotionClassifier(model_dir).model)
    onnx_model = OnnxSERModel(onnx_dir)
    generator = torch.Generator().manual_seed(1)
    for batch, samples in ((1, 20_000), (4, 45_000)):
        input_values = torch.randn(batch, samples, generator=generator) * 0.2
        attention_mask = torch.ones(batch, samples, dtype=torch.long)
        attention_mask[-1, 30_000:] = 0
        with torch.no_grad():
            expected = reference(input_values, attention_mask).numpy()
        actual = onnx_model.run_graph(input_values.numpy(), attention_mask.numpy())
        assert actual.shape == (batch, len(TINY_LABELS))
        assert np.abs(actual - expected).max() <= TOLERANCE


def assert_backends_agree(exported, architecture, waveforms):
    model_dir, onnx_dir = exported[architecture]
    torch_backend, onnx_backend = EmotionClassifier(model_dir), EmotionClassifier(onnx_dir, backend="onnx")
    for batch in (waveforms[:1], waveforms[1:]):  # batch sizes 1 and len-1, different lengths
        expected, actual = torch_backend.logits(batch), onnx_backend.logits(batch)
        assert actual.shape == expected.shape == (len(batch), len(TINY_LABELS))
        assert np.abs(actual - expected).max() <= TOLERANCE


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_model_logits_match_pytorch_on_speech_like_audio(exported, architecture):
    """Whole-model evaluation output, SERCNN's segment averaging included (done outside the graph for ONNX)."""
    waveforms = speech_like_waveforms(4, seed=3)
    assert len({len(w) for w in waveforms}) == 4
    assert_backends_agree(exported, architecture, waveforms)


@requires_emodb()
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_model_logits_match_pytorch_on_real_emodb_speech(exported, architecture):
    assert_backends_agree(exported, architecture, emodb_waveforms(4))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_predict_with_the_onnx_backend_gives_the_torch_backend_answer(exported, architecture, tmp_path, capsys):
    import soundfile

    model_dir, onnx_dir = exported[architecture]
    for index, waveform in enumerate(speech_like_waveforms(3, seed=5)):
        soundfile.write(tmp_path / f"clip{index}.wav", waveform, 16000)
    results = {}
    for backend, folder in (("torch", model_dir), ("onnx", onnx_dir)):
        argv = ["predict", str(folder), str(tmp_path), "--backend", backend, "--format", "json", "--no-progress",
                "--window", "1.0", "--hop", "0.5", "--batch-size", "2"]
        assert cli_main(argv) == 0
        results[backend] = json.loads(capsys.readouterr().out)["predictions"]

    def table(predictions):
        rows = [p["probabilities"] for p in predictions]
        rows += [s["probabilities"] for p in predictions for s in p["segments"]]
        return np.array([[row[label] for label in TINY_LABELS] for row in rows])

    assert [p["file"] for p in results["onnx"]] == [p["file"] for p in results["torch"]]
    assert np.abs(table(results["onnx"]) - table(results["torch"])).max() <= TOLERANCE


def test_torch_backend_on_an_onnx_folder_says_which_backend_to_use(exported):
    with pytest.raises(ValueError, match="--backend onnx"):
        EmotionClassifier(exported["ser-cnn"][1])
    with pytest.raises(FileNotFoundError, match="hf-ser export-onnx"):
        EmotionClassifier(exported["ser-cnn"][0], backend="onnx")


def test_whisper_feature_models_are_refused_with_a_reason(tmp_path):
    from transformers import WhisperFeatureExtractor

    from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig

    whisper = {"model_type": "whisper", "d_model": 16, "encoder_layers": 1, "encoder_attention_heads": 2,
               "decoder_layers": 1, "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
               "num_mel_bins": 8, "max_source_positions": 16}
    model = Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=whisper, num_labels=2, head_hidden_sizes=[8]))
    with pytest.raises(ValueError, match="input_features"):
        export_onnx(model, tmp_path / "out", feature_extractor=WhisperFeatureExtractor(feature_size=8))
    assert not (tmp_path / "out").exists()
