"""Compare trained runs and cross-validations side by side: a Markdown table, an accuracy bar chart and a grid of
confusion matrices.

    hf-ser compare outputs/emodb outputs/cv-base-emodb ... --output outputs/comparison

A run folder is what `hf-ser train` writes (`test_results.json`, `run_config.json`, `confusion_matrix.json`); a CV
folder is what `hf-ser cv` writes (`cv_summary.json`, with one run folder per fold).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from hf_ser.evaluation.metrics import percent
from hf_ser.evaluation.plots import plot_confusion_matrix
from hf_ser.experiments.cross_validation import METRICS, SUMMARY_FILE, describe_folds
from hf_ser.run_folder import (
    CONFUSION_MATRIX_FILE,
    DATA_REPORT_FILE,
    RUN_CONFIG_FILE,
    TEST_RESULTS_FILE,
    TRAINER_STATE_FILE,
    read_json,
)

logger = logging.getLogger(__name__)

BAR_CHART = "accuracy.png"
CONFUSION_GRID = "confusion_matrices.png"


def _optional_json(path: Path) -> dict:
    if not path.is_file():
        logger.warning("%s is missing: its columns show n/a (runs trained before hf-ser wrote it lack it)", path)
        return {}
    return read_json(path)


def _run_details(run_dir: Path) -> dict:
    """Hyperparameters and sizes of one trained run, from `run_config.json`, the model's `config.json` and the
    Trainer's `trainer_state.json`."""
    config = _optional_json(run_dir / RUN_CONFIG_FILE)
    model_config = _optional_json(run_dir / "config.json")
    state = _optional_json(run_dir / TRAINER_STATE_FILE)
    model_args, data_args = config.get("model_args", {}), config.get("data_args", {})
    training_args = config.get("training_args", {})
    return {
        "model_type": model_args.get("model_type") or model_config.get("model_type"),
        "peft": bool(model_args.get("peft")),
        "backbone": _backbone(model_args, model_config),
        "trainable_parameters": config.get("parameters", {}).get("trainable"),
        "learning_rate": training_args.get("learning_rate"),
        "optimizer": training_args.get("optim"),
        "batch_size": training_args.get("per_device_train_batch_size"),
        "gradient_accumulation_steps": training_args.get("gradient_accumulation_steps", 1),
        "epochs_run": state.get("epoch"),
        "max_epochs": training_args.get("num_train_epochs"),
        "max_steps": training_args.get("max_steps", -1),
        "weight_decay": training_args.get("weight_decay"),
        "dropout": model_config.get("head_dropout", model_config.get("dropout")),
        "augmentation": [item.get("name", "?") for item in data_args.get("augmentations") or []] if config else None,
    }


def _backbone(model_args: dict, model_config: dict) -> Optional[str]:
    if model_args.get("backbone"):
        return model_args["backbone"]
    if model_args.get("model_name_or_path"):
        return f"from {model_args['model_name_or_path']}"
    backbone_config = model_args.get("backbone_config") or model_config.get("backbone_config")
    if isinstance(backbone_config, dict):
        layers, width = backbone_config.get("num_hidden_layers"), backbone_config.get("hidden_size")
        return f"{backbone_config.get('model_type', '?')} {layers}x{width}, random init"
    if (model_args.get("model_type") or model_config.get("model_type")) == "ser-cnn":
        features = (model_args.get("model_config") or {}).get("feature_type", model_config.get("feature_type"))
        return f"none ({features} CNN)" if features else "none (CNN)"
    return None


def load_result(path: str | Path) -> dict:
    """One row of the comparison: test scores (mean and std over folds for a CV folder), confusion matrix, labels,
    evaluation protocol and the run's hyperparameters."""
    path = Path(path)
    if (path / SUMMARY_FILE).is_file():
        summary = read_json(path / SUMMARY_FILE)
        folds = summary["folds"]
        details = _run_details(path / folds[0]["fold"])  # every fold shares the recipe; only speakers differ
        runs = [row["epochs_run"] for row in folds if row.get("epochs_run") is not None]
        details["epochs_run"] = float(np.mean(runs)) if runs else None
        protocol = summary["protocol"]
        return {
            "name": path.name,
            "path": str(path),
            "kind": "cv",
            "evaluation": f"{describe_folds(protocol['folds'])} CV ({protocol['n_folds']} folds)",
            **{metric: summary["mean"][metric] for metric in METRICS},
            **{f"{metric}_std": summary["std"][metric] for metric in METRICS},
            "labels": summary["labels"],
            "confusion_matrix": summary["confusion_matrix"],
            **details,
        }
    if (path / TEST_RESULTS_FILE).is_file():
        results = read_json(path / TEST_RESULTS_FILE)
        missing = [f"test_{metric}" for metric in METRICS if f"test_{metric}" not in results]
        if missing:
            raise KeyError(f"{path / 'test_results.json'} has no {missing}")
        matrix = read_json(path / CONFUSION_MATRIX_FILE)
        report = _optional_json(path / DATA_REPORT_FILE)
        test_speakers = report.get("splits", {}).get("test", {}).get("speakers")
        return {
            "name": path.name,
            "path": str(path),
            "kind": "run",
            "evaluation": f"test speakers {' '.join(test_speakers)}" if test_speakers else "test split",
            **{metric: results[f"test_{metric}"] for metric in METRICS},
            **{f"{metric}_std": None for metric in METRICS},
            "labels": matrix["labels"],
            "confusion_matrix": matrix["test"],
            **_run_details(path),
        }
    raise FileNotFoundError(
        f"{path}: neither a `hf-ser cv` folder ({SUMMARY_FILE}) nor a `hf-ser train` folder (test_results.json)"
    )


def _unique_names(results: list[dict]) -> None:
    names = [result["name"] for result in results]
    for result in results:
        if names.count(result["name"]) > 1:
            result["name"] = result["path"]


def _score(result: dict, metric: str) -> str:
    return percent(result[metric], result[f"{metric}_std"], unit="")


def _na(value, fmt: str = "{}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _parameters(count: Optional[int]) -> str:
    if count is None:
        return "n/a"
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count / 1e3:.1f} k"


def _epochs(result: dict) -> str:
    limit = f"{result['max_steps']} steps" if (result["max_steps"] or -1) > 0 else _na(result["max_epochs"], "{:g}")
    return f"{_na(result['epochs_run'], '{:.3g}')} / {limit}"


def markdown_table(results: list[dict]) -> str:
    header = [
        "model",
        "backbone",
        "trainable params",
        "WA %",
        "UA %",
        "macro-F1 %",
        "evaluation",
        "learning rate",
        "optimizer",
        "batch",
        "epochs run / max",
        "weight decay",
        "dropout",
        "augmentation",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if "%" in h else "---" for h in header) + "|"]
    for result in results:
        model = _na(result["model_type"]) + (" + LoRA" if result["peft"] else "")
        batch = _na(result["batch_size"])
        if (result["gradient_accumulation_steps"] or 1) > 1:
            batch += f" x {result['gradient_accumulation_steps']} accum."
        augmentation = result["augmentation"]
        cells = [
            f"{result['name']} ({model})",
            _na(result["backbone"]),
            _parameters(result["trainable_parameters"]),
            _score(result, "wa"),
            _score(result, "ua"),
            _score(result, "macro_f1"),
            result["evaluation"],
            _na(result["learning_rate"], "{:g}"),
            _na(result["optimizer"]),
            batch,
            _epochs(result),
            _na(result["weight_decay"], "{:g}"),
            _na(result["dropout"], "{:g}"),
            "n/a" if augmentation is None else (", ".join(augmentation) or "none"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(results: list[dict], path: Path) -> None:
    """WA and UA bars per model, with the standard deviation over folds as error bars for CV results."""
    plt = _pyplot()
    x = np.arange(len(results))
    width = 0.38
    figure, axes = plt.subplots(figsize=(max(5.0, 1.4 * len(results) + 2), 4.2))
    for offset, metric, label in ((-width / 2, "wa", "WA"), (width / 2, "ua", "UA")):
        values = [100 * result[metric] for result in results]
        errors = [100 * (result[f"{metric}_std"] or 0.0) for result in results]
        bars = axes.bar(x + offset, values, width, yerr=errors, capsize=4, label=label)
        axes.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2, fontsize=8)
    label_counts = {len(result["labels"]) for result in results}
    if len(label_counts) == 1:
        axes.axhline(100 / label_counts.pop(), color="grey", linestyle="--", linewidth=1, label="chance (UA)")
    axes.set_xticks(
        x,
        [result["name"] for result in results],
        rotation=20 if len(results) > 3 else 0,
        ha="right" if len(results) > 3 else "center",
    )
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(0, 118)
    axes.set_title("Accuracy over different models")
    axes.legend(loc="upper center", ncols=3, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_confusion_grid(results: list[dict], path: Path) -> None:
    """One row-normalised test confusion matrix per model (summed over folds for CV results)."""
    plt = _pyplot()
    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    size = 1.2 + 0.6 * max(len(result["labels"]) for result in results)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * (size + 0.6), rows * (size + 0.4)), squeeze=False)
    for axis, result in zip(axes.flat, results):
        plot_confusion_matrix(
            axis, result["confusion_matrix"], result["labels"], f"{result['name']}\nUA {100 * result['ua']:.1f} %"
        )
    for axis in list(axes.flat)[len(results) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def compare(paths: list[str | Path], output_dir: str | Path) -> list[dict]:
    """Write `comparison.md`, `comparison.json`, `accuracy.png` and `confusion_matrices.png` to `output_dir`."""
    if not paths:
        raise ValueError("give at least one run or CV folder to compare")
    results = [load_result(path) for path in paths]
    _unique_names(results)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_accuracy(results, output_dir / BAR_CHART)
    plot_confusion_grid(results, output_dir / CONFUSION_GRID)
    stds = "± is the sample standard deviation over cross-validation folds; single runs have none."
    text = "\n".join(
        [
            "# Model comparison",
            "",
            f"Test scores of each model on speakers it never saw in training or validation. {stds}",
            "",
            markdown_table(results),
            "",
            *[f"- {result['name']}: `{result['path']}`" for result in results],
            "",
            f"![Accuracy over different models]({BAR_CHART})",
            "",
            f"![Confusion matrices]({CONFUSION_GRID})",
            "",
        ]
    )
    (output_dir / "comparison.md").write_text(text)
    (output_dir / "comparison.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="hf-ser compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (hf-ser train) and/or CV folders (hf-ser cv)")
    parser.add_argument("--output", required=True, help="folder for comparison.md and the PNGs")
    args = parser.parse_args(argv)
    results = compare(args.runs, args.output)
    print(markdown_table(results))
    return results
