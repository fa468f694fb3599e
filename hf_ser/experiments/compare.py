"""Compare trained runs and cross-validations side by side: a Markdown table, an accuracy bar chart, a grid of
confusion matrices and paired bootstrap tests; or, with `--matrix`, a train-corpus x test-corpus UA table. Dimensional
runs (`task: dimensional`) get CCC columns (mean and per dimension, with their bootstrap intervals) and a CCC chart.

    hf-ser compare outputs/emodb outputs/cv-base-emodb ... --output outputs/comparison
    hf-ser compare --matrix outputs/emodb outputs/emodb-on-ravdess outputs/ravdess ... --output outputs/cross-corpus

A run folder is what `hf-ser train` writes (`test_results.json`, `run_config.json`, `confusion_matrix.json`,
`test_predictions.json`); a CV folder is what `hf-ser cv` writes (`cv_summary.json`, with one run folder per fold); an
evaluation folder is what `hf-ser evaluate` writes (`evaluation_config.json` and the results of one split).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from hf_ser.evaluation.bootstrap import paired_bootstrap_test, read_interval
from hf_ser.evaluation.evaluate_command import EVALUATION_CONFIG_FILE, SPLITS
from hf_ser.evaluation.metrics import ccc_key, percent
from hf_ser.evaluation.plots import plot_confusion_matrix, pyplot, save_score_matrix
from hf_ser.experiments.cross_validation import METRICS, SUMMARY_FILE, describe_folds
from hf_ser.run_folder import (
    CONFUSION_MATRIX_FILE,
    DATA_REPORT_FILE,
    RUN_CONFIG_FILE,
    TEST_RESULTS_FILE,
    TRAINER_STATE_FILE,
    predictions_file,
    read_json,
    results_file,
)

logger = logging.getLogger(__name__)

BAR_CHART = "accuracy.png"
CCC_CHART = "ccc.png"  # dimensional runs
CONFUSION_GRID = "confusion_matrices.png"
MATRIX_FILE = "cross_corpus"  # .md, .json and .png
TEST_PREDICTIONS_FILE = predictions_file("test")
GENERIC_DATASETS = ("audiofolder", "csv", "jsonl")


def _optional_json(path: Path) -> dict:
    if not path.is_file():
        logger.warning("%s is missing: its columns show n/a (runs trained before hf-ser wrote it lack it)", path)
        return {}
    return read_json(path)


def _run_details(run_dir: Path) -> dict:
    """Hyperparameters and sizes of one trained run, from `run_config.json`, the model's `config.json` and the
    Trainer's `trainer_state.json` (a checkpoint folder: its own model and state, its run's `run_config.json`)."""
    checkpoint = not (run_dir / RUN_CONFIG_FILE).is_file() and (run_dir.parent / RUN_CONFIG_FILE).is_file()
    config = _optional_json((run_dir.parent if checkpoint else run_dir) / RUN_CONFIG_FILE)
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


def _corpus(run_dir: Path, report: dict) -> tuple[str, Optional[str]]:
    """The corpus a run was scored on: its name (`corpus_name`), and where it lives (`data_dir` or `manifest`), which
    tells two corpora of one name apart."""
    data_args = _optional_json(run_dir / RUN_CONFIG_FILE).get("data_args", {}) if run_dir.is_dir() else {}
    name = corpus_name({**data_args, "dataset": report.get("dataset") or data_args.get("dataset")})
    location = data_args.get("data_dir") or data_args.get("manifest")
    return name, (str(Path(location).resolve()) if location and Path(location).exists() else location)


def load_result(path: str | Path) -> dict:
    """One row of the comparison: test scores (mean and std over folds for a CV folder), confusion matrix, labels,
    evaluation protocol and the run's hyperparameters."""
    path = Path(path)
    if (path / SUMMARY_FILE).is_file():
        summary = read_json(path / SUMMARY_FILE)
        folds = summary["folds"]
        scored = [path / row.get("run", row["fold"]) for row in folds]  # `hf-ser cv --refit`: fold-XX-refit
        details = _run_details(scored[0])  # every fold shares the recipe; only speakers differ
        runs = [row["epochs_run"] for row in folds if row.get("epochs_run") is not None]
        details["epochs_run"] = float(np.mean(runs)) if runs else None
        protocol = summary["protocol"]
        dataset, location = _corpus(scored[0], _optional_json(scored[0] / DATA_REPORT_FILE))
        evaluation = f"{describe_folds(protocol['folds'])} CV ({protocol['n_folds']} folds)"
        if summary.get("missing_folds"):  # a `hf-ser cv --summarize` before every fold job finished
            evaluation = (
                f"{describe_folds(protocol['folds'])} CV, incomplete: {len(folds)} of {protocol['planned_folds']} "
                f"folds (missing {', '.join(summary['missing_folds'])})"
            )
            logger.warning("%s: %s; its mean is not the CV's result", path, evaluation)
        return {
            "name": path.name,
            "path": str(path),
            "kind": "cv",
            "evaluation": evaluation,
            "dataset": dataset,
            "corpus_location": location,
            "test_speakers": sorted({speaker for row in folds for speaker in row.get("test_speakers", [])}),
            "absent_classes": [],
            **{metric: summary["mean"][metric] for metric in METRICS},
            **{f"{metric}_std": summary["std"][metric] for metric in METRICS},
            **{f"{metric}_ci": None for metric in METRICS},
            "predictions": [str(run_dir / TEST_PREDICTIONS_FILE) for run_dir in scored],
            "labels": summary["labels"],
            "confusion_matrix": summary["confusion_matrix"],
            **details,
        }
    if (path / TEST_RESULTS_FILE).is_file():
        results = read_json(path / TEST_RESULTS_FILE)
        report = _optional_json(path / DATA_REPORT_FILE)
        dataset, location = _corpus(path, report)
        row = {
            "name": path.name,
            "path": str(path),
            "kind": "run",
            "evaluation": "held-out test split",
            "dataset": dataset,
            "corpus_location": location,
            "test_speakers": report.get("splits", {}).get("test", {}).get("speakers") or [],
            "predictions": [str(path / TEST_PREDICTIONS_FILE)],
        }
        if f"test_{ccc_key()}" in results and "test_ua" not in results:
            return {**row, **_dimensional_scores(results, report), **_run_details(_model_folder(path))}
        missing = [f"test_{metric}" for metric in METRICS if f"test_{metric}" not in results]
        if missing:
            raise KeyError(f"{path / 'test_results.json'} has no {missing}")
        matrix = read_json(path / CONFUSION_MATRIX_FILE)
        return {
            **row,
            "absent_classes": results.get("test_absent_classes") or [],
            **{metric: results[f"test_{metric}"] for metric in METRICS},
            **{f"{metric}_std": None for metric in METRICS},
            **{f"{metric}_ci": read_interval(results, "test", metric) for metric in METRICS},
            "labels": matrix["labels"],
            "confusion_matrix": matrix["test"],
            **_run_details(_model_folder(path)),
        }
    raise FileNotFoundError(
        f"{path}: neither a `hf-ser cv` folder ({SUMMARY_FILE}) nor a `hf-ser train` folder (test_results.json)"
    )


def _dimensional_scores(results: dict, report: dict) -> dict:
    """A dimensional run's scores: CCC of each dimension and their mean with intervals; no class scores."""
    dimensions = report.get("labels") or [
        key.removeprefix("test_ccc_") for key in results if key.startswith("test_ccc_") and "_ci_" not in key
    ]
    keys = [ccc_key(name) for name in dimensions] + [ccc_key()]
    return {
        "absent_classes": [],
        **{metric: None for metric in METRICS},
        **{f"{metric}_std": None for metric in METRICS},
        **{f"{metric}_ci": None for metric in METRICS},
        "dimensions": dimensions,
        **{key: results[f"test_{key}"] for key in keys},
        **{f"{key}_ci": read_interval(results, "test", key) for key in keys},
        "labels": dimensions,
        "confusion_matrix": None,
    }


def _ccc_cells(result: dict) -> list[str]:
    """`0.412 (0.300–0.520)` (mean CCC with its 95 % interval) and `arousal 0.61, valence 0.20, ...`; "–" for a
    categorical run."""
    if not result.get("dimensions"):
        return ["–", "–"]

    def cell(key: str) -> str:
        interval = result[f"{key}_ci"]
        return f"{result[key]:.3f}" + (f" ({interval[0]:.3f}–{interval[1]:.3f})" if interval else "")

    each = ", ".join(f"{name} {cell(ccc_key(name))}" for name in result["dimensions"])
    return [cell(ccc_key()), each]


def plot_ccc(results: list[dict], path: Path) -> None:
    """CCC bars per dimension (and their mean) for each dimensional run; error bars: 95 % bootstrap intervals."""
    plt = pyplot()
    names = list(dict.fromkeys(name for result in results for name in result["dimensions"])) + ["mean"]
    x = np.arange(len(names))
    width = 0.8 / len(results)
    figure, axes = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 2), 4.0))
    for index, result in enumerate(results):
        keys = [ccc_key(None if name == "mean" else name) for name in names]
        values = [result.get(key, np.nan) for key in keys]
        errors = [
            (value - result[f"{key}_ci"][0], result[f"{key}_ci"][1] - value) if result.get(f"{key}_ci") else (0, 0)
            for key, value in zip(keys, values)
        ]
        offset = (index - (len(results) - 1) / 2) * width
        bars = axes.bar(x + offset, values, width, yerr=np.maximum(np.array(errors).T, 0), capsize=3)
        bars.set_label(result["name"])
        axes.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=8)
    axes.set_xticks(x, names)
    axes.set_ylabel("test CCC")
    axes.axhline(0, color="grey", linewidth=1)
    axes.set_title("CCC over different models (error bars: 95 % bootstrap CI over test clips)", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _model_folder(path: Path) -> Path:
    """Where a results folder's model is: the folder itself, or for an `hf-ser evaluate` folder the run or checkpoint
    it scored, when that is a local folder."""
    config = read_json(path / EVALUATION_CONFIG_FILE, missing_ok=True)
    if config is None or not Path(config["model"]).is_dir():
        return path
    return Path(config["model"])


def _speakers(speakers: list[str], limit: int = 8) -> str:
    if not speakers:
        return "n/a"
    shown = ", ".join(speakers[:limit])
    return shown if len(speakers) <= limit else f"{shown}, ... ({len(speakers)} in all)"


def test_set_of(result: dict) -> tuple:
    """What a score was computed on: the corpus (name and location), the test speakers and the label set."""
    return result["dataset"], result["corpus_location"], tuple(result["test_speakers"]), tuple(result["labels"])


def different_test_sets(results: list[dict]) -> Optional[str]:
    """A warning naming each run's corpus and test speakers when the runs were not all scored on the same test set,
    else None."""
    if len({test_set_of(result) for result in results}) <= 1:
        return None
    described = "; ".join(
        f"{result['name']}: {result['dataset']}"
        + (f" at {result['corpus_location']}" if result["corpus_location"] else "")
        + f", test speakers {_speakers(result['test_speakers'])}, labels {', '.join(result['labels'])}"
        for result in results
    )
    return (
        "these runs were not scored on the same test set (different corpus, test speakers or labels), so their "
        f"scores are not directly comparable: {described}"
    )


def _unique_names(results: list[dict]) -> None:
    names = [result["name"] for result in results]
    for result in results:
        if names.count(result["name"]) > 1:
            result["name"] = result["path"]


def _score(result: dict, metric: str) -> str:
    """`59.14 ± 11.17` for CV (std over folds), `62.50 (55.10–70.00)` for a single run (95 % bootstrap CI); a UA
    whose test split lacked classes says over how many it averages."""
    score = percent(
        result[metric], result[f"{metric}_std"], unit="", interval=result[f"{metric}_ci"], interval_label=""
    )
    absent = result["absent_classes"]
    if metric == "ua" and absent:
        score += f" ({len(result['labels']) - len(absent)} of {len(result['labels'])} classes)"
    return score


def classes_scored(result: dict) -> int:
    """How many classes the UA averages over: the label set less the classes the test split has no item of."""
    return len(result["labels"]) - len(result["absent_classes"])


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
    dimensional = any(result.get("dimensions") for result in results)
    header = [
        "model",
        "backbone",
        "trainable params",
        "WA %",
        "UA %",
        "macro-F1 %",
        *(["mean CCC", "CCC per dimension"] if dimensional else []),
        "dataset",
        "test speakers",
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
            *(_ccc_cells(result) if dimensional else []),
            result["dataset"],
            _speakers(result["test_speakers"]),
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


ERROR_BARS = "error bars: 95 % bootstrap CI over test clips (single runs); ± sample std over folds (CV)"


def _error_bar(result: dict, metric: str) -> tuple[float, float]:
    """(below, above) the bar: the bootstrap interval of a single run, the std over folds of a CV, else none."""
    if result[f"{metric}_ci"] is not None:
        low, high = result[f"{metric}_ci"]
        return max(0.0, result[metric] - low), max(0.0, high - result[metric])
    std = result[f"{metric}_std"] or 0.0
    return std, std


def plot_accuracy(results: list[dict], path: Path) -> None:
    """WA and UA bars per model; error bars: the 95 % bootstrap interval of single runs, the std over folds of CVs."""
    plt = pyplot()
    x = np.arange(len(results))
    width = 0.38
    figure, axes = plt.subplots(figsize=(max(5.0, 1.4 * len(results) + 2), 4.2))
    for offset, metric, label in ((-width / 2, "wa", "WA"), (width / 2, "ua", "UA")):
        values = [100 * result[metric] for result in results]
        errors = np.array([_error_bar(result, metric) for result in results]).T * 100
        bars = axes.bar(x + offset, values, width, yerr=errors, capsize=4, label=label)
        axes.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2, fontsize=8)
    # Chance UA is one over the classes the UA averages over, which differs between runs whose test splits lack
    # different classes: one line when all runs share it, else a short line over each run's bars.
    scored = [classes_scored(result) for result in results]
    if len(set(scored)) == 1:
        axes.axhline(100 / scored[0], color="grey", linestyle="--", linewidth=1, label="chance (UA)")
    else:
        axes.hlines(
            [100 / n for n in scored],
            x - width,
            x + width,
            color="grey",
            linestyle="--",
            linewidth=1,
            label="chance (UA)",
        )
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
    figure.text(0.5, 0.01, ERROR_BARS, ha="center", va="bottom", fontsize=7)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_confusion_grid(results: list[dict], path: Path) -> None:
    """One row-normalised test confusion matrix per model (summed over folds for CV results)."""
    plt = pyplot()
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


def _test_predictions(result: dict) -> dict[str, tuple[str, str]] | str:
    """Path -> (label, predicted) of every test clip of a run (a CV: all folds), or why there are none."""
    clips: dict[str, tuple[str, str]] = {}
    for file in map(Path, result["predictions"]):
        if not file.is_file():
            return f"{file} is missing (runs trained before hf-ser wrote it lack it)"
        for row in read_json(file):
            clips[row["path"]] = (row["label"], row["predicted"])
    return clips


def paired_test(first: dict, second: dict, samples: int, seed: int) -> dict:
    """The paired bootstrap test of `second` against `first` on their common test clips; `skipped` says why when
    they were not scored on the same clips with the same labels."""
    pair = {"a": first["name"], "b": second["name"]}
    if first.get("dimensions") or second.get("dimensions"):
        return {**pair, "skipped": "the paired test compares class predictions; a dimensional run has none"}
    clips_a, clips_b = _test_predictions(first), _test_predictions(second)
    for clips in (clips_a, clips_b):
        if isinstance(clips, str):
            return {**pair, "skipped": clips}
    if first["labels"] != second["labels"]:
        return {**pair, "skipped": f"the label sets differ ({first['labels']} vs {second['labels']})"}
    only_a, only_b = sorted(set(clips_a) - set(clips_b)), sorted(set(clips_b) - set(clips_a))
    if only_a or only_b:
        return {
            **pair,
            "skipped": f"the test sets differ: {len(only_a)} clip(s) only in {first['name']}, "
            f"{len(only_b)} only in {second['name']} (e.g. {(only_a or only_b)[0]})",
        }
    paths = sorted(clips_a)
    relabelled = [path for path in paths if clips_a[path][0] != clips_b[path][0]]
    if relabelled:
        return {**pair, "skipped": f"{len(relabelled)} clip(s) carry different labels, e.g. {relabelled[0]}"}
    ids = {label: i for i, label in enumerate(first["labels"])}
    references = [ids[clips_a[path][0]] for path in paths]
    tests = paired_bootstrap_test(
        references,
        [ids[clips_a[path][1]] for path in paths],
        [ids[clips_b[path][1]] for path in paths],
        num_labels=len(ids),
        samples=samples,
        seed=seed,
    )
    return {**pair, "clips": len(paths), "bootstrap_samples": samples, "seed": seed, **tests}


def paired_tests(results: list[dict], samples: int, seed: int) -> list[dict]:
    """Every pair of compared models, in the order given: each later model (B) against each earlier one (A)."""
    return [paired_test(first, second, samples, seed) for i, first in enumerate(results) for second in results[i + 1 :]]


def paired_tests_table(tests: list[dict]) -> list[str]:
    scored, skipped = [test for test in tests if "skipped" not in test], [test for test in tests if "skipped" in test]
    lines = []
    if scored:
        header = ["A", "B", "clips"] + [f"{name} B − A (95 % CI)" for name in ("UA", "WA", "macro-F1")]
        header += [f"p ({name})" for name in ("UA", "WA", "macro-F1")]
        lines += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        for test in scored:
            cells = [test["a"], test["b"], str(test["clips"])]
            cells += [
                f"{100 * test[metric]['difference']:+.2f} ({100 * test[metric]['ci_low']:+.2f} to "
                f"{100 * test[metric]['ci_high']:+.2f})"
                for metric in METRICS_SHOWN
            ]
            cells += [f"{test[metric]['p_value']:.3g}" for metric in METRICS_SHOWN]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"- {test['a']} vs {test['b']}: not tested, {test['skipped']}." for test in skipped]
    return lines


METRICS_SHOWN = ("ua", "wa", "macro_f1")


def compare(
    paths: list[str | Path], output_dir: str | Path, bootstrap_samples: int = 1000, seed: int = 42
) -> list[dict]:
    """Write `comparison.md`, `comparison.json`, `accuracy.png` and `confusion_matrices.png` to `output_dir`; with
    `bootstrap_samples` > 0 the Markdown and JSON carry a paired bootstrap test for every pair of models."""
    if not paths:
        raise ValueError("give at least one run or CV folder to compare")
    results = [load_result(path) for path in paths]
    _unique_names(results)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    categorical = [result for result in results if not result.get("dimensions")]
    dimensional = [result for result in results if result.get("dimensions")]
    if categorical:
        plot_accuracy(categorical, output_dir / BAR_CHART)
        plot_confusion_grid(categorical, output_dir / CONFUSION_GRID)
    if dimensional:
        plot_ccc(dimensional, output_dir / CCC_CHART)
    tests = paired_tests(results, bootstrap_samples, seed) if bootstrap_samples > 0 and len(results) > 1 else []
    uncertainty = (
        "± is the sample standard deviation over cross-validation folds; the brackets after a single run's score are "
        "its 95 % bootstrap confidence interval over the test clips (runs trained before hf-ser wrote intervals, or "
        "with `bootstrap_samples: 0`, show none)."
    )
    test_lines = []
    if tests:
        test_lines = [
            "## Paired bootstrap tests",
            "",
            f"Two models scored on the same test clips: the difference B − A in percentage points, its 95 % interval "
            f"and the two-sided p-value of no difference, over {bootstrap_samples} paired resamples of the clips "
            f"(seed {seed}). Models tested on different clips are not compared.",
            "",
            *paired_tests_table(tests),
            "",
        ]
    warning = different_test_sets(results)
    if warning:
        logger.warning("hf-ser compare: %s", warning)
    absent = [
        f"- {result['name']}: the test split has no item of {', '.join(result['absent_classes'])}; its UA and "
        f"macro-F1 average over the other {classes_scored(result)} classes."
        for result in results
        if result["absent_classes"]
    ]
    text = "\n".join(
        [
            "# Model comparison",
            "",
            f"Test scores of each model on speakers it never saw in training or validation. {uncertainty}",
            "",
            *([f"**Warning:** {warning}.", ""] if warning else []),
            markdown_table(results),
            "",
            *(absent + [""] if absent else []),
            *[f"- {result['name']}: `{result['path']}`" for result in results],
            "",
            *(
                [
                    f"![Accuracy over different models]({BAR_CHART})",
                    "",
                    f"Error bars: {ERROR_BARS.removeprefix('error bars: ')}.",
                    "",
                    f"![Confusion matrices]({CONFUSION_GRID})",
                    "",
                ]
                if categorical
                else []
            ),
            *([f"![CCC over different models]({CCC_CHART})", ""] if dimensional else []),
            *test_lines,
        ]
    )
    (output_dir / "comparison.md").write_text(text)
    (output_dir / "comparison.json").write_text(json.dumps(results, indent=2))
    if tests:
        (output_dir / "paired_tests.json").write_text(json.dumps(tests, indent=2))
    return results


def corpus_name(data_args: dict) -> str:
    """A corpus as a matrix row or column: its `dataset`, with the folder's name for generic loaders."""
    dataset = data_args.get("dataset") or "unknown"
    where = data_args.get("data_dir") or data_args.get("manifest")
    return f"{dataset}:{Path(where).name}" if dataset in GENERIC_DATASETS and where else dataset


def _training_corpus(run_dir: Path) -> Optional[str]:
    """The corpus a run folder's model was trained on (a checkpoint folder: its run's), from its JSON files."""
    for folder in (run_dir, run_dir.parent):
        config = read_json(folder / RUN_CONFIG_FILE, missing_ok=True)
        if config and config.get("data_args"):
            return corpus_name(config["data_args"])
        report = read_json(folder / DATA_REPORT_FILE, missing_ok=True)
        if report and report.get("dataset"):
            return report["dataset"]
    return None


def matrix_entry(path: str | Path) -> dict:
    """One cell of the cross-corpus matrix: a train run or CV (scored on its own corpus) or an `hf-ser evaluate`
    folder (a model scored on some corpus), with its UA and what was excluded."""
    path = Path(path)
    config = read_json(path / EVALUATION_CONFIG_FILE, missing_ok=True)
    if config is None:  # a train run or CV: scored on held-out speakers of its own corpus
        if (path / SUMMARY_FILE).is_file():
            summary = read_json(path / SUMMARY_FILE)
            corpus = _training_corpus(path / summary["folds"][0]["fold"])
            ua, evaluation = summary["mean"]["ua"], f"mean of {len(summary['folds'])} CV folds"
        elif (path / TEST_RESULTS_FILE).is_file():
            corpus, ua, evaluation = (
                _training_corpus(path),
                read_json(path / TEST_RESULTS_FILE).get("test_ua"),
                "test split",
            )
        else:
            raise FileNotFoundError(
                f"{path}: not a `hf-ser train` ({TEST_RESULTS_FILE}), `hf-ser cv` ({SUMMARY_FILE}) or "
                f"`hf-ser evaluate` ({EVALUATION_CONFIG_FILE}) folder"
            )
        if ua is None:
            raise KeyError(f"{path / TEST_RESULTS_FILE} has no test_ua")
        return {
            "path": str(path),
            "trained_on": corpus or "unknown",
            "tested_on": corpus or "unknown",
            "ua": ua,
            "evaluation": evaluation,
            "excluded_model_classes": [],
            "unmapped_labels": {},
        }
    prefix = SPLITS[config["split"]]
    results = read_json(path / results_file(prefix))
    model = str(config["model"])
    return {
        "path": str(path),
        "trained_on": (_training_corpus(Path(model)) if Path(model).is_dir() else None) or f"unknown ({model})",
        "tested_on": corpus_name(config["data_args"]),
        "ua": results[f"{prefix}_ua"],
        "evaluation": f"{config['split']} split, {results.get(f'{prefix}_samples', '?')} clips",
        "excluded_model_classes": results.get(f"{prefix}_excluded_model_classes", []),
        "unmapped_labels": results.get(f"{prefix}_unmapped_labels", {}),
    }


def cross_corpus_matrix(paths: list[str | Path], output_dir: str | Path) -> dict:
    """Write `cross_corpus.md`, `.json` and `.png`: UA of every (training corpus, test corpus) pair found in `paths`;
    two folders for the same pair are refused (compare them with plain `hf-ser compare`)."""
    if not paths:
        raise ValueError("give run, CV or `hf-ser evaluate` folders for the matrix")
    entries = [matrix_entry(path) for path in paths]
    cells: dict[tuple[str, str], dict] = {}
    for entry in entries:
        key = (entry["trained_on"], entry["tested_on"])
        if key in cells:
            raise ValueError(
                f"{cells[key]['path']} and {entry['path']} both score a model trained on {key[0]} on {key[1]}: "
                "give one folder per cell"
            )
        cells[key] = entry
    rows = sorted({entry["trained_on"] for entry in entries})
    columns = sorted({entry["tested_on"] for entry in entries})
    ua = [[cells[(row, column)]["ua"] if (row, column) in cells else None for column in columns] for row in rows]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_score_matrix(
        ua, rows, columns, output_dir / f"{MATRIX_FILE}.png", "UA % (rows: trained on, columns: tested on)"
    )
    lines = [
        "# Cross-corpus UA",
        "",
        "UA (unweighted average recall, %) of a model trained on the row's corpus, tested on the column's. On the "
        "diagonal, the held-out test speakers of the training corpus; elsewhere, the other corpus. Labels are mapped "
        "onto the model's; excluded classes are listed below the table.",
        "",
        "| trained on \\ tested on | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row, values in zip(rows, ua):
        lines.append(f"| {row} | " + " | ".join("–" if v is None else f"{100 * v:.2f}" for v in values) + " |")
    lines += ["", f"![Cross-corpus UA]({MATRIX_FILE}.png)", ""]
    for entry in entries:
        excluded = []
        if entry["excluded_model_classes"]:
            excluded.append(f"model classes absent from the corpus: {', '.join(entry['excluded_model_classes'])}")
        if entry["unmapped_labels"]:
            unmapped = ", ".join(f"{label} ({count})" for label, count in entry["unmapped_labels"].items())
            excluded.append(f"corpus labels the model lacks, clips dropped: {unmapped}")
        lines.append(
            f"- {entry['trained_on']} → {entry['tested_on']}: `{entry['path']}`, {entry['evaluation']}"
            + (f"; excluded {'; '.join(excluded)}" if excluded else "")
        )
    (output_dir / f"{MATRIX_FILE}.md").write_text("\n".join(lines) + "\n")
    payload = {"rows": rows, "columns": columns, "ua": ua, "cells": entries}
    (output_dir / f"{MATRIX_FILE}.json").write_text(json.dumps(payload, indent=2))
    return payload


def main(argv: Optional[list[str]] = None) -> list[dict] | dict:
    parser = argparse.ArgumentParser(prog="hf-ser compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs",
        nargs="+",
        help="run folders (hf-ser train), CV folders (hf-ser cv), with --matrix also hf-ser evaluate folders",
    )
    parser.add_argument("--output", required=True, help="folder for the Markdown, JSON and PNG files")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="write a training-corpus x test-corpus UA table and heat map (cross_corpus.md/.json/.png) instead",
    )
    parser.add_argument(
        "--bootstrap_samples",
        type=int,
        default=1000,
        help="paired resamples for the bootstrap test between models on the same test clips (0: no tests)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the paired bootstrap resampling")
    args = parser.parse_args(argv)
    if args.matrix:
        matrix = cross_corpus_matrix(args.runs, args.output)
        print((Path(args.output) / f"{MATRIX_FILE}.md").read_text())
        return matrix
    results = compare(args.runs, args.output, bootstrap_samples=args.bootstrap_samples, seed=args.seed)
    print(markdown_table(results))
    return results
