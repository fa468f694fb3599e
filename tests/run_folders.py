"""Run folders built in milliseconds, without training: a real tiny model saved with `save_pretrained`, its feature
extractor, and the JSON files `hf-ser train` writes, filled with the values a test wants the card to show."""

import json
from pathlib import Path

from conftest import TINY_WAV2VEC2
from transformers import Wav2Vec2FeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.data.dataset import CorpusReport

LABELS = ["anger", "boredom", "happiness", "sadness"]


def make_run_folder(
    run_dir: Path,
    dataset: str = "emodb",
    protocol: str = "speaker-independent",
    backbone: str | None = None,
    test_ua: float = 0.5,
    labels: list = LABELS,
    test_speakers: tuple = ("03", "08"),
    test_absent_classes: tuple = (),
) -> Path:
    config = Wav2Vec2SERConfig(
        backbone_config=dict(TINY_WAV2VEC2),
        head_hidden_sizes=[8],
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    Wav2Vec2SER(config).save_pretrained(run_dir)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(run_dir)
    splits = {
        "train": {"items": 300, "seconds": 900.0, "speakers": ["11", "12", "13", "14", "15", "16"]},
        "validation": {"items": 81, "seconds": 240.0, "speakers": ["09", "10"]},
        "test": {"items": 107, "seconds": 300.0, "speakers": list(test_speakers)},
    }
    CorpusReport(dataset=dataset, labels=labels, protocol=protocol, splits=splits).save(run_dir)
    (run_dir / "eval_results.json").write_text(
        json.dumps({"eval_wa": 0.6, "eval_ua": 0.55, "eval_macro_f1": 0.52, "eval_samples": 81})
    )
    (run_dir / "test_results.json").write_text(
        json.dumps(
            {
                "test_wa": 0.625,
                "test_ua": test_ua,
                "test_macro_f1": 0.4567,
                "test_samples": 107,
                "test_absent_classes": list(test_absent_classes),
            }
        )
    )
    matrix = [[0] * len(labels) for _ in labels]
    (run_dir / "confusion_matrix.json").write_text(json.dumps({"labels": labels, "protocol": protocol, "test": matrix}))
    run_config = {
        "model_args": {"model_type": "wav2vec2-ser", "backbone": backbone, "head_hidden_sizes": [8]},
        "data_args": {"dataset": dataset, "max_duration_seconds": 3.0},
        "training_args": {"learning_rate": 0.001, "seed": 42, "metric_for_best_model": "ua"},
    }
    (run_dir / "run_config.json").write_text(json.dumps(run_config))
    return run_dir


def write_test_predictions(
    run_dir: Path, references: list, predictions: list, labels: list = LABELS, samples: int = 200, seed: int = 0
) -> dict:
    """Per-clip test predictions (`clip-000.wav`, ...; class ids into `labels`) with the `test_results.json` and
    `confusion_matrix.json` that hf-ser computes from them, bootstrap intervals included; returns the results."""
    from hf_ser.evaluation.bootstrap import interval_metrics
    from hf_ser.evaluation.metrics import ser_scores

    clips = [
        {"path": f"clip-{i:03d}.wav", "label": labels[label], "predicted": labels[predicted]}
        for i, (label, predicted) in enumerate(zip(references, predictions))
    ]
    (run_dir / "test_predictions.json").write_text(json.dumps(clips))
    scores = ser_scores(predictions, references, num_labels=len(labels), confusion=True)
    results = {f"test_{metric}": scores[metric] for metric in ("wa", "ua", "macro_f1")}
    results.update(
        test_samples=len(clips), **interval_metrics("test", references, predictions, len(labels), samples, seed)
    )
    (run_dir / "test_results.json").write_text(json.dumps(results))
    matrix = {"labels": labels, "protocol": "speaker-independent", "test": scores["confusion_matrix"]}
    (run_dir / "confusion_matrix.json").write_text(json.dumps(matrix))
    return results
