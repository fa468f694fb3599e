"""Final evaluation of a trained model: metrics files and confusion matrices for validation and test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from datasets import DatasetDict
from transformers import Trainer

from hf_ser.evaluation.bootstrap import SCORES, interval_metrics
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
    scored_ids: Optional[list[int]] = None,
    extra: Optional[dict] = None,
) -> dict:
    """Write `eval_results.json`, `test_results.json` (keys `eval_wa`, `test_ua`, ..., with 95 % bootstrap intervals
    `test_ua_ci_low` / `_high` unless `bootstrap_samples` is 0), the per-clip predictions behind them
    (`eval_predictions.json`, `test_predictions.json`), `confusion_matrix.json` and one confusion-matrix PNG per split;
    returns all metrics. `prefixes` maps the splits to score to their metric prefixes (`hf-ser evaluate` scores other
    splits). `scored_ids`, for a corpus that lacks some of the model's classes: the model's class id of each of
    `label_names` (the split's labels are model ids); predictions are the argmax over those classes' logits only.
    `extra` keys (a cross-corpus evaluation's exclusions) go into every results file."""
    results, matrices = {}, {}
    samples, seed = getattr(trainer.args, "bootstrap_samples", 0), trainer.args.seed
    for split, prefix in prefixes.items():
        if split not in splits:
            continue
        prediction = trainer.predict(splits[split], metric_key_prefix=prefix)
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        references = prediction.label_ids
        if scored_ids is not None:
            position = {model_id: i for i, model_id in enumerate(scored_ids)}
            references = np.array([position[int(label)] for label in references])
            logits = logits[:, scored_ids]
        predicted = np.argmax(logits, -1)
        scores = ser_scores(predicted, references, num_labels=len(label_names), confusion=True)
        matrices[split] = scores["confusion_matrix"]
        metrics = {
            **prediction.metrics,
            **{f"{prefix}_{metric}": scores[metric] for metric in SCORES},  # over the scored classes only
            f"{prefix}_samples": len(splits[split]),
            **interval_metrics(prefix, references, predicted, len(label_names), samples, seed),
            **{f"{prefix}_{key}": value for key, value in (extra or {}).items()},
        }
        trainer.log_metrics(
            prefix, {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
        )
        trainer.save_metrics(prefix, metrics)
        results.update(metrics)
        if trainer.is_world_process_zero():
            # Per clip, so `hf-ser predict` (which batches differently) can be checked against these results.
            rows = zip(splits[split].with_format(None)["path"], references.tolist(), predicted.tolist())
            per_clip = [
                {"path": path, "label": label_names[label_id], "predicted": label_names[predicted_id]}
                for path, label_id, predicted_id in rows
            ]
            (Path(output_dir) / predictions_file(prefix)).write_text(json.dumps(per_clip, indent=1))
            name = "confusion_matrix" if split == "test" else f"confusion_matrix_{split}"
            title = f"{split} ({protocol}): UA {scores['ua']:.1%}, WA {scores['wa']:.1%}"
            save_confusion_matrix(matrices[split], label_names, Path(output_dir) / f"{name}.png", title)
    if trainer.is_world_process_zero():
        payload = {"labels": label_names, "protocol": protocol, **matrices}
        (Path(output_dir) / CONFUSION_MATRIX_FILE).write_text(json.dumps(payload, indent=2))
    return results
