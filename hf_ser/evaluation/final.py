"""Final evaluation of a trained model: metrics files and confusion matrices for validation and test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from transformers import Trainer

from hf_ser.evaluation.metrics import ser_scores
from hf_ser.evaluation.plots import save_confusion_matrix
from hf_ser.run_folder import CONFUSION_MATRIX_FILE, SPLIT_PREFIXES, predictions_file


def evaluate_and_save(
    trainer: Trainer,
    splits: DatasetDict,
    label_names: list[str],
    output_dir: str,
    protocol: str,
    prefixes: dict[str, str] = SPLIT_PREFIXES,
) -> dict:
    """Write `eval_results.json`, `test_results.json` (keys `eval_wa`, `test_ua`, ...), the per-clip predictions
    behind them (`eval_predictions.json`, `test_predictions.json`), `confusion_matrix.json` and one confusion-matrix
    PNG per split; returns all metrics. `prefixes` maps the splits to score to their
    metric prefixes (`hf-ser evaluate` scores other splits)."""
    results, matrices = {}, {}
    for split, prefix in prefixes.items():
        if split not in splits:
            continue
        prediction = trainer.predict(splits[split], metric_key_prefix=prefix)
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        scores = ser_scores(np.argmax(logits, -1), prediction.label_ids, num_labels=len(label_names), confusion=True)
        matrices[split] = scores["confusion_matrix"]
        metrics = {**prediction.metrics, f"{prefix}_samples": len(splits[split])}
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        results.update(metrics)
        if trainer.is_world_process_zero():
            # Per clip, so `hf-ser predict` (which batches differently) can be checked against these results.
            rows = zip(
                splits[split].with_format(None)["path"], prediction.label_ids.tolist(), np.argmax(logits, -1).tolist()
            )
            per_clip = [
                {"path": path, "label": label_names[label], "predicted": label_names[predicted]}
                for path, label, predicted in rows
            ]
            (Path(output_dir) / predictions_file(prefix)).write_text(json.dumps(per_clip, indent=1))
            name = "confusion_matrix" if split == "test" else f"confusion_matrix_{split}"
            title = f"{split} ({protocol}): UA {scores['ua']:.1%}, WA {scores['wa']:.1%}"
            save_confusion_matrix(matrices[split], label_names, Path(output_dir) / f"{name}.png", title)
    if trainer.is_world_process_zero():
        payload = {"labels": label_names, "protocol": protocol, **matrices}
        (Path(output_dir) / CONFUSION_MATRIX_FILE).write_text(json.dumps(payload, indent=2))
    return results
