"""Specification of `hf-ser predict` and `hf_ser.predict_timeline` (hf_ser/predict.py)."""

import csv
import io
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY_LABELS, TINY_WAV2VEC2
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

import hf_ser
from hf_ser.cli import main as cli_main
from hf_ser.data.demo_corpus import synthesize
from hf_ser.inference.predict import AGGREGATE, EmotionClassifier, resolve_device

SR = 16000
LONG_SAMPLES = 84_800  # 5.3 s


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Speech-like files in several formats, rates and channel counts, one nested folder deep, plus a long file."""
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    clips = [synthesize(emotion, 140.0, (600.0, 1500.0), rng) for emotion in ("angry", "sad", "happy")]
    soundfile.write(root / "a.wav", clips[0], SR)
    (root / "nested").mkdir()
    at_44k = hf_ser.data.audio.resample(clips[1], SR, 44100)
    soundfile.write(root / "nested" / "b.flac", np.stack([at_44k, 0.5 * at_44k], axis=1), 44100)  # stereo, 44.1 kHz
    soundfile.write(root / "nested" / "c.ogg", clips[2], SR, format="OGG", subtype="VORBIS")
    (root / "notes.txt").write_text("not audio, not an audio extension: ignored")
    long = np.concatenate(clips * 3)[:LONG_SAMPLES]
    assert len(long) == LONG_SAMPLES
    soundfile.write(root / "long.wav", long, SR)
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli_main(["predict", *map(str, argv), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predicts_every_audio_file_of_files_and_folders(tiny_model_dir, audio_dir, capsys):
    code, out, err = run_cli(capsys, tiny_model_dir, audio_dir / "nested", audio_dir / "a.wav", "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert result["labels"] == TINY_LABELS
    files = [Path(p["file"]).name for p in result["predictions"]]
    assert sorted(files) == ["a.wav", "b.flac", "c.ogg"]  # folder searched recursively, any format
    for prediction in result["predictions"]:
        assert set(prediction["probabilities"]) == set(TINY_LABELS)
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)
        assert "segments" not in prediction
    durations = {Path(p["file"]).name: p["duration"] for p in result["predictions"]}
    assert durations["b.flac"] == pytest.approx(soundfile.info(audio_dir / "nested" / "b.flac").duration, abs=1e-3)
    assert result["failures"] == []
    assert "3 file(s) predicted, 0 skipped" in err


def test_csv_and_table_outputs_carry_the_model_labels(tiny_model_dir, audio_dir, capsys, tmp_path):
    code, _, err = run_cli(capsys, tiny_model_dir, audio_dir, "--format", "csv", "--output", tmp_path / "p.csv")
    assert code == 0 and "written to" in err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert [row["segment"] for row in rows] == ["all"] * 4
    assert {Path(row["file"]).name for row in rows} == {"a.wav", "b.flac", "c.ogg", "long.wav"}
    for row in rows:
        probabilities = {label: float(row[label]) for label in TINY_LABELS}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert row["label"] == max(probabilities, key=probabilities.get)

    code, out, _ = run_cli(capsys, tiny_model_dir, audio_dir / "a.wav", "--format", "table")
    header, _, row = out.splitlines()[:3]
    assert header.split()[-4:] == TINY_LABELS
    values = [float(v) for v in row.split()[-4:]]
    assert row.split()[0].endswith("a.wav") and sum(values) == pytest.approx(1.0, abs=2e-3)


def test_timeline_segments_cover_the_audio_with_known_bounds(tiny_model_dir, audio_dir, capsys):
    code, out, _ = run_cli(
        capsys, tiny_model_dir, audio_dir / "long.wav", "--window", "2", "--hop", "1", "--format", "json"
    )
    assert code == 0
    (prediction,) = json.loads(out)["predictions"]
    assert prediction["duration"] == pytest.approx(5.3)
    # Windows start every second; the last one is moved to end exactly at the end of the 5.3 s file.
    bounds = [(s["start"], s["end"]) for s in prediction["segments"]]
    np.testing.assert_allclose(bounds, [(0, 2), (1, 3), (2, 4), (3, 5), (3.3, 5.3)], atol=1e-9)
    matrix = np.array([[s["probabilities"][label] for label in TINY_LABELS] for s in prediction["segments"]])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    aggregate = [prediction["probabilities"][label] for label in TINY_LABELS]
    np.testing.assert_allclose(aggregate, matrix.mean(axis=0), atol=1e-12)
    assert prediction["aggregate"] == AGGREGATE
    assert prediction["label"] == TINY_LABELS[int(np.argmax(aggregate))]


def test_timeline_segments_match_predicting_each_window_alone(tiny_model_dir, audio_dir):
    classifier = EmotionClassifier(tiny_model_dir)
    waveform = hf_ser.data.audio.load_audio(audio_dir / "long.wav")
    segments = classifier.timeline(waveform, window=2.0, hop=1.5, batch_size=3)
    for segment in segments:
        alone = classifier.probabilities([waveform[round(segment.start * SR) : round(segment.end * SR)]])[0]
        np.testing.assert_allclose([segment.probabilities[label] for label in TINY_LABELS], alone, atol=1e-5)


def test_batching_by_length_keeps_results_and_order(tiny_model_dir, audio_dir):
    """Sorted, padded batches (feature extractor pad + attention mask) give each file its own unbatched answer."""
    classifier = EmotionClassifier(tiny_model_dir)
    waveforms = [hf_ser.data.audio.load_audio(p) for p in sorted(audio_dir.rglob("*.*")) if p.suffix != ".txt"]
    assert len({len(w) for w in waveforms}) == len(waveforms)
    one_by_one = classifier.probabilities(waveforms, batch_size=1)
    batched = classifier.probabilities(waveforms, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_device_defaults_to_the_accelerator_and_onnx_stays_on_the_cpu(tiny_model_dir, audio_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda:1")  # asked for: taken as given
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda: torch.device("cuda"))
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device(None, backend="onnx") == torch.device("cpu")
    with pytest.raises(ValueError, match="onnx backend runs on the CPU"):
        resolve_device("cuda", backend="onnx")
    monkeypatch.undo()
    code, out, _ = run_cli(capsys, tiny_model_dir, audio_dir / "a.wav", "--format", "json", "--device", "cpu")
    assert code == 0
    _, default_out, _ = run_cli(capsys, tiny_model_dir, audio_dir / "a.wav", "--format", "json")
    assert json.loads(out) == json.loads(default_out)
    assert {p.device for p in EmotionClassifier(tiny_model_dir, device="cpu").model.parameters()} == {
        torch.device("cpu")
    }


def test_undecodable_files_are_reported_and_counted_not_fatal(tiny_model_dir, audio_dir, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00 this is not a wav file")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), SR)
    code, out, err = run_cli(
        capsys, tiny_model_dir, audio_dir / "a.wav", broken, empty, tmp_path / "missing.wav", "--format", "json"
    )
    assert code == 0
    result = json.loads(out)
    assert [Path(p["file"]).name for p in result["predictions"]] == ["a.wav"]
    reasons = {Path(f["file"]).name: f["reason"] for f in result["failures"]}
    assert set(reasons) == {"broken.wav", "empty.wav", "missing.wav"}
    assert "cannot decode" in reasons["broken.wav"] and "no samples" in reasons["empty.wav"]
    assert "no such file" in reasons["missing.wav"]
    assert f"skipped {broken}:" in err and "1 file(s) predicted, 3 skipped" in err

    code, _, err = run_cli(capsys, tiny_model_dir, broken)
    assert code == 1 and "0 file(s) predicted, 1 skipped" in err


def test_timeline_plot_is_written_as_png(tiny_model_dir, audio_dir, tmp_path, capsys):
    plot = tmp_path / "plots" / "timeline.png"
    code, _, err = run_cli(
        capsys, tiny_model_dir, audio_dir / "long.wav", audio_dir / "a.wav", "--window", "1.5", "--plot", plot
    )
    assert code == 0 and str(plot) in err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000

    with pytest.raises(SystemExit):  # a plot without a timeline is refused up front
        cli_main(["predict", str(tiny_model_dir), str(audio_dir / "a.wav"), "--plot", str(plot)])
    assert "--plot draws a timeline" in capsys.readouterr().err


def test_predict_timeline_from_python_on_files_waveforms_and_models(tiny_model_dir, audio_dir):
    from_file = hf_ser.predict_timeline(str(tiny_model_dir), audio_dir / "long.wav", window=2.0, hop=1.0)
    assert [round(s.start, 3) for s in from_file.segments] == [0, 1, 2, 3, 3.3]
    assert from_file.aggregate == AGGREGATE

    # A waveform at another rate is resampled to the model's; an in-memory model needs its feature extractor.
    waveform_8k = hf_ser.data.audio.resample(hf_ser.data.audio.load_audio(audio_dir / "long.wav"), SR, 8000)
    model = AutoModelForAudioClassification.from_pretrained(tiny_model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(tiny_model_dir)
    from_array = hf_ser.predict_timeline(
        model, waveform_8k, window=2.0, hop=1.0, sampling_rate=8000, feature_extractor=extractor
    )
    assert from_array.duration == pytest.approx(5.3)
    assert len(from_array.segments) == 5
    # Resampling 16k -> 8k -> 16k loses the top band; the answer stays close, not identical.
    np.testing.assert_allclose(
        [from_array.probabilities[label] for label in TINY_LABELS],
        [from_file.probabilities[label] for label in TINY_LABELS],
        atol=0.05,
    )
    with pytest.raises(ValueError, match="feature_extractor"):
        hf_ser.predict_timeline(model, waveform_8k, sampling_rate=8000)
    with pytest.raises(ValueError, match="mono 1-D"):
        hf_ser.predict_timeline(model, np.zeros((2, 100), dtype=np.float32), feature_extractor=extractor)


@pytest.mark.slow
def test_predicts_with_the_folder_of_a_training_run(tiny_run, tiny_corpus, capsys):
    """The end of `hf-ser train` is the start of `hf-ser predict`: its output folder is a MODEL."""
    code, out, _ = run_cli(capsys, tiny_run, tiny_corpus / "sad", "--format", "json", "--batch-size", "4")
    assert code == 0
    predictions = json.loads(out)["predictions"]
    assert len(predictions) == len(list((tiny_corpus / "sad").glob("*.wav")))
    config = json.loads((tiny_run / "config.json").read_text())
    assert json.loads(out)["labels"] == [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in predictions)


def test_labels_follow_the_model_id_order_on_a_model_whose_answer_is_known(tmp_path, audio_dir):
    """ids in non-alphabetical order; the head's last layer answers id 2 whatever the audio."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
    from hf_ser.inference.predict import EmotionClassifier

    id2label = {0: "sad", 1: "angry", 2: "neutral", 3: "happy"}
    config = Wav2Vec2SERConfig(
        backbone_config=dict(TINY_WAV2VEC2),
        head_hidden_sizes=[8],
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
    )
    model = Wav2Vec2SER(config).eval()
    with torch.no_grad():
        last = model.head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 1.0, 3.0, 2.0]))
    model.save_pretrained(tmp_path / "model")
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(tmp_path / "model")
    report = EmotionClassifier(tmp_path / "model", device="cpu").predict_files([audio_dir])
    expected = torch.tensor([0.0, 1.0, 3.0, 2.0]).softmax(-1).tolist()
    assert report.predictions and all(p.label == "neutral" for p in report.predictions)
    for prediction in report.predictions:
        assert list(prediction.probabilities) == ["sad", "angry", "neutral", "happy"]
        assert list(prediction.probabilities.values()) == pytest.approx(expected, abs=1e-6)
