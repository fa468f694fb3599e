"""Final evaluation of a trained model: metrics files and confusion matrices for validation and test."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
from datasets import DatasetDict
from transformers import Trainer

from hf_ser.evaluation.bootstrap import SCORES, dimensional_interval_metrics, interval_metrics
from hf_ser.evaluation.metrics import ccc_key, dimensional_scores, ser_scores
from hf_ser.evaluation.plots import save_confusion_matrix
from hf_ser.run_folder import CONFUSION_MATRIX_FILE, MODEL_CARD_FILE, SPLIT_PREFIXES, predictions_file


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
    `extra` keys (a cross-corpus evaluation's exclusions) go into every results file. `<prefix>_absent_classes`: the
    labels the split has no item of, which its UA and macro-F1 leave out (the recall of an absent class is 0/0).
    A dimensional model (`problem_type: regression`; `label_names` are its dimensions) gets `<prefix>_ccc_<dimension>`
    and their mean `<prefix>_ccc` with their intervals, and per-clip values instead of classes; no confusion matrix."""
    results, matrices = {}, {}
    samples, seed = getattr(trainer.args, "bootstrap_samples", 0), trainer.args.seed
    dimensional = getattr(trainer.model.config, "problem_type", None) == "regression"
    for split, prefix in prefixes.items():
        if split not in splits:
            continue
        prediction = trainer.predict(splits[split], metric_key_prefix=prefix)
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        references = prediction.label_ids
        if dimensional:
            metrics = _save_dimensional_split(
                trainer, splits[split], prefix, prediction.metrics, logits, references, label_names, output_dir, extra
            )
            results.update(metrics)
            continue
        if scored_ids is not None:
            position = {model_id: i for i, model_id in enumerate(scored_ids)}
            references = np.array([position[int(label)] for label in references])
            logits = logits[:, scored_ids]
        predicted = np.argmax(logits, -1)
        scores = ser_scores(predicted, references, num_labels=len(label_names), confusion=True)
        matrices[split] = scores["confusion_matrix"]
        present = set(references.tolist())
        absent = [name for index, name in enumerate(label_names) if index not in present]
        metrics = {
            **prediction.metrics,
            **{f"{prefix}_{metric}": scores[metric] for metric in SCORES},  # over the scored classes only
            f"{prefix}_samples": len(splits[split]),
            f"{prefix}_absent_classes": absent,
            **interval_metrics(prefix, references, predicted, len(label_names), samples, seed),
            **{f"{prefix}_{key}": value for key, value in (extra or {}).items()},
        }
        trainer.log_metrics(
            prefix,
            {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
            | {f"{prefix}_absent_classes": ", ".join(absent) or "none"},
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
            title += f" (no {', '.join(absent)} item)" if absent else ""
            save_confusion_matrix(matrices[split], label_names, Path(output_dir) / f"{name}.png", title)
    if trainer.is_world_process_zero() and not dimensional:
        payload = {"labels": label_names, "protocol": protocol, **matrices}
        (Path(output_dir) / CONFUSION_MATRIX_FILE).write_text(json.dumps(payload, indent=2))
    return results


def _save_dimensional_split(
    trainer: Trainer,
    split,
    prefix: str,
    prediction_metrics: dict,
    predicted,
    references,
    dimensions: list[str],
    output_dir: str,
    extra: Optional[dict],
) -> dict:
    """A dimensional model's results file for one split (CCC per dimension, their mean, bootstrap intervals) and its
    per-clip predictions file (reference and predicted value of each dimension); returns the metrics."""
    predicted, references = np.asarray(predicted, dtype=float), np.asarray(references, dtype=float)
    samples, seed = getattr(trainer.args, "bootstrap_samples", 0), trainer.args.seed
    scores = dimensional_scores(predicted, references, dimensions)
    metrics = {
        **prediction_metrics,
        f"{prefix}_samples": len(split),
        **{f"{prefix}_{key}": value for key, value in scores.items()},
        **dimensional_interval_metrics(prefix, references, predicted, dimensions, samples, seed),
        **{f"{prefix}_{key}": value for key, value in (extra or {}).items()},
    }
    trainer.log_metrics(prefix, {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))})
    trainer.save_metrics(prefix, metrics)
    if trainer.is_world_process_zero():
        rows = zip(split.with_format(None)["path"], references.tolist(), predicted.tolist())
        per_clip = [
            {"path": path, "label": dict(zip(dimensions, label)), "predicted": dict(zip(dimensions, values))}
            for path, label, values in rows
        ]
        (Path(output_dir) / predictions_file(prefix)).write_text(json.dumps(per_clip, indent=1))
    return metrics


def dimensional_summary(results: dict, prefix: str, dimensions: list[str]) -> str:
    """`CCC 0.412 (arousal 0.61, valence 0.20, dominance 0.43)`: a split's mean CCC and each dimension's."""
    each = ", ".join(f"{name} {results[f'{prefix}_{ccc_key(name)}']:.3f}" for name in dimensions)
    return f"CCC {results[f'{prefix}_{ccc_key()}']:.3f} ({each})"


def protocol_in_words(protocol: str, test_speakers: list) -> str:
    """`speaker-independent: 2 unseen speakers (09, 10)`, or what a speaker-dependent test means."""
    if protocol == "speaker-independent" and test_speakers:
        count = len(test_speakers)
        return f"{protocol}: {count} unseen speaker{'s' if count != 1 else ''} ({', '.join(test_speakers)})"
    if protocol == "speaker-dependent":
        return f"{protocol}: test clips may come from speakers heard in training"
    return protocol


def end_summary(results: dict, report: dict, output_dir: str, example_clip: str | None = None) -> str:
    """The few lines a person reads when a run ends: test UA / WA with the protocol in words, where the confusion
    matrix and the model card are, and the next command to try. `report` is the run's `data_report.json` content."""
    splits = report.get("splits", {})
    test, validation = splits.get("test", {}), splits.get("validation", {})
    folder = Path(output_dir)
    lines = [f"Finished: {report.get('dataset')} -> {folder}"]
    if "test_ua" in results:
        absent = results.get("test_absent_classes") or []
        lines.append(
            f"  test UA {results['test_ua']:.1%}"
            + (f" (over the classes present; no {', '.join(absent)} item)" if absent else "")
            + f", WA {results['test_wa']:.1%} on {test.get('items')} clips; "
            + protocol_in_words(report.get("protocol", ""), test.get("speakers", []))
        )
    if "eval_ua" in results:
        lines.append(
            f"  validation UA {results['eval_ua']:.1%} (speakers {', '.join(validation.get('speakers', []))}: "
            "chose the checkpoint; the test split was scored once, after training)"
        )
    dimensions = report.get("labels", [])
    if report.get("task") == "dimensional" and "test_ccc" in results:
        lines.append(
            f"  test {dimensional_summary(results, 'test', dimensions)} on {test.get('items')} clips; "
            + protocol_in_words(report.get("protocol", ""), test.get("speakers", []))
        )
    if report.get("task") == "dimensional" and "eval_ccc" in results:
        lines.append(f"  validation {dimensional_summary(results, 'eval', dimensions)} (chose the checkpoint)")
    if report.get("task") != "dimensional":
        lines.append(f"  confusion matrix: {folder / 'confusion_matrix.png'}")
    lines.append(f"  model card:       {folder / MODEL_CARD_FILE}")
    lines.append(f"  next: hf-ser predict {folder} {example_clip or 'speech.wav'}")
    if report.get("dataset") == "demo":
        lines.append("    or a real corpus: hf-ser train recipes/base.yaml --data_dir /path/to/emodb")
    return "\n".join(lines)


def print_end_summary(results: dict, report, splits: DatasetDict, output_dir: str) -> None:
    """Print `end_summary` on stdout (not through logging, so it shows however quiet the logs are), with one test clip
    as the example for `hf-ser predict`."""
    example = splits["test"].with_format(None)["path"][0] if len(splits.get("test", [])) else None
    print(end_summary(results, asdict(report), output_dir, example_clip=example), flush=True)
