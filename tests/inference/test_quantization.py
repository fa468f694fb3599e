"""Specification of `hf-ser export-onnx --quantize int8` (hf_ser/inference/quantization.py) and of predicting with
the int8 model. One export for the module (tens of seconds on 2 CPU cores), so it is marked slow."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
from dimensional_look_alikes import DIMENSIONS, save_tiny_dimensional_model, write_clip

from hf_ser.cli import main as cli_main
from hf_ser.data.demo_corpus import synthesize
from hf_ser.inference.predict import EmotionClassifier
from hf_ser.inference.quantization import PARITY_FILE, parity_audio

pytestmark = pytest.mark.slow
EMOTIONS = ["angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="module")
def run_with_test_split(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished run's folder: the tiny model and the `test_predictions.json` listing its test split's clips."""
    root = tmp_path_factory.mktemp("quantize")
    run = root / "run"
    shutil.copytree(tiny_model_dir, run)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(6):
        path = root / "test_clips" / f"clip{index}.wav"
        path.parent.mkdir(exist_ok=True)
        emotion = EMOTIONS[index % 4]
        soundfile.write(path, synthesize(emotion, rng.uniform(100, 220), (600.0, 1500.0), rng), 16000)
        rows.append({"path": str(path), "label": emotion, "predicted": emotion})
    (run / "test_predictions.json").write_text(json.dumps(rows))
    return run


@pytest.fixture(scope="module")
def quantized(run_with_test_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "onnx"
    assert cli_main(["export-onnx", str(run_with_test_split), str(out), "--quantize", "int8"]) == 0
    return out


def test_quantize_int8_writes_a_dynamically_quantized_graph(quantized):
    graph = onnx.load(quantized / "model.onnx")
    onnx.checker.check_model(graph)
    operators = Counter(node.op_type for node in graph.graph.node)
    assert operators["MatMulInteger"] >= 8 and operators["DynamicQuantizeLinear"] >= 8  # the Transformer's MatMuls
    weight_types = Counter(initializer.data_type for initializer in graph.graph.initializer)
    assert weight_types[onnx.TensorProto.INT8] >= 8
    assert sorted(path.name for path in quantized.glob("*.onnx*")) == ["model.onnx"]  # no fp32 weights left behind
    info = json.loads((quantized / "onnx_export.json").read_text())
    assert info["quantization"] == {"type": "int8", "parity_file": PARITY_FILE}
    assert info["fp32_parity"]["max_abs_diff"] <= 1e-4  # fp32 graph vs PyTorch, before quantisation


def test_int8_covers_the_feature_encoders_convolutions_after_the_first(quantized):
    """Exported as MatMuls (hf_ser/inference/conv_matmul.py), the tiny encoder's 2nd and 3rd convolutions (kernel 4,
    16 -> 16 channels) have int8 weights of (4 x 16, 16); the waveform's convolution and the positional one stay fp32."""
    graph = onnx.load(quantized / "model.onnx")
    operators = Counter(node.op_type for node in graph.graph.node)
    assert operators["Conv"] == 2 and operators["ConvInteger"] == 0
    int8_shapes = [list(i.dims) for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8_shapes.count([64, 16]) == 2
    assert json.loads((quantized / "onnx_export.json").read_text())["feature_encoder_as_matmuls"] is True
    report = json.loads((quantized / PARITY_FILE).read_text())
    assert report["quantization"].endswith("feature encoder convolutions as MatMuls")


def test_the_parity_report_compares_int8_with_fp32_on_the_runs_test_split(quantized, run_with_test_split):
    report = json.loads((quantized / PARITY_FILE).read_text())
    assert report["audio"].startswith(f"test split of {run_with_test_split}")
    assert report["files"] == 6 and report["skipped"] == []
    assert 0 <= report["identical_top_labels"] <= 6
    assert report["top_label_agreement"] == pytest.approx(report["identical_top_labels"] / 6)
    assert 0 < report["max_abs_probability_difference"] < 1  # int8 is not fp32, and still a probability
    assert 0 < report["mean_abs_probability_difference"] <= report["max_abs_probability_difference"]
    assert report["int8_bytes"] < report["fp32_bytes"]


def test_predict_with_the_onnx_backend_runs_the_int8_model(quantized, run_with_test_split, capsys):
    clips = run_with_test_split.parent / "test_clips"
    assert cli_main(["predict", str(quantized), str(clips), "--backend", "onnx", "--format", "json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == 6
    for prediction in predictions:
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # the labels differ from the fp32 model's (= PyTorch's) exactly where the parity report says they do
    torch_labels = [p.label for p in EmotionClassifier(run_with_test_split).predict_files([clips]).predictions]
    same = sum(p["label"] == label for p, label in zip(predictions, torch_labels))
    assert same == json.loads((quantized / PARITY_FILE).read_text())["identical_top_labels"]


def test_parity_audio_is_every_file_under_parity_data_dir_or_the_runs_test_split(run_with_test_split, tmp_path):
    clips = run_with_test_split.parent / "test_clips"
    files, source = parity_audio(run_with_test_split, clips)
    assert [path.name for path in files] == [f"clip{index}.wav" for index in range(6)]
    assert source == f"audio files under {clips}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--parity_data_dir .*empty: folder holds no audio files"):
        parity_audio(run_with_test_split, tmp_path / "empty")


def test_quantize_without_audio_to_compare_on_is_one_line_before_exporting(tiny_model_dir, tmp_path, capsys):
    code = cli_main(["export-onnx", str(tiny_model_dir), str(tmp_path / "out"), "--quantize", "int8"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "test_predictions.json not found: --quantize compares int8 with fp32 on real audio" in error
    assert "--parity_data_dir" in error
    assert not (tmp_path / "out").exists()


def test_the_parity_report_of_a_dimensional_model_compares_values_and_their_concordance(tmp_path, capsys):
    """A dimensional model has no top label: the report holds |value differences| and CCC with fp32, per dimension,
    and its numbers are those of predicting with both graphs."""
    model_dir = save_tiny_dimensional_model("wav2vec2-ser", tmp_path / "model")
    clips = tmp_path / "clips"
    for index in range(6):
        write_clip(
            clips / f"clip{index}.wav", 1.0 + 0.8 * index, 5.0 - 0.7 * index, seed=index, seconds=0.8 + index / 5
        )
    out = tmp_path / "int8"
    assert (
        cli_main(["export-onnx", str(model_dir), str(out), "--quantize", "int8", "--parity_data_dir", str(clips)]) == 0
    )
    report = json.loads((out / PARITY_FILE).read_text())
    names = list(DIMENSIONS.values())
    assert report["files"] == 6 and report["dimensions"] == names
    assert not {"identical_top_labels", "top_label_agreement", "max_abs_probability_difference"} & set(report)
    assert 0 < report["mean_abs_value_difference"] <= report["max_abs_value_difference"]
    assert list(report["per_dimension"]) == names
    per_dimension = report["per_dimension"].values()
    assert max(d["max_abs_value_difference"] for d in per_dimension) == report["max_abs_value_difference"]
    assert all(-1 <= d["ccc_with_fp32"] <= 1 for d in per_dimension)
    assert report["mean_ccc_with_fp32"] == pytest.approx(np.mean([d["ccc_with_fp32"] for d in per_dimension]))
    line = capsys.readouterr().out
    assert f"max |value difference| {report['max_abs_value_difference']:.2e}" in line and "top labels" not in line

    # the same numbers from predicting with the int8 graph and with PyTorch (= the fp32 graph within 1e-4)
    int8, torch_fp32 = (
        np.array(
            [
                [p.dimensions[name] for name in names]
                for p in EmotionClassifier(folder).predict_files([clips]).predictions
            ]
        )
        for folder in (out, model_dir)
    )
    differences = np.abs(int8 - torch_fp32)
    assert differences.max() == pytest.approx(report["max_abs_value_difference"], abs=1e-4)
    assert differences[:, 0].mean() == pytest.approx(
        report["per_dimension"]["arousal"]["mean_abs_value_difference"], abs=1e-4
    )
