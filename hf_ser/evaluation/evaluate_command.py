"""Score a saved model on a corpus: the same data code, `Trainer.predict` and result files as training.

    hf-ser evaluate MODEL [RECIPE.yaml] --output_dir DIR [--split test] [--key value ...]

MODEL is a run folder, a saved checkpoint or a Hub id (a LoRA run folder too). A run folder's own data keys
(`run_config.json`: dataset, data_dir, speaker lists, ...; the seed; the speakers of its splits from
`data_report.json` when they were drawn automatically) are the defaults, so `hf-ser evaluate RUN --output_dir DIR`
scores the run's test split again. A recipe's data keys override them, and `--key value` overrides both
(`--dataset`, `--data_dir`, `--test_speakers`, `--labels`, ...: the parser of `hf-ser train`); a recipe's model keys
are ignored (the model is MODEL). The console says where the data keys came from. `--split all` scores the whole
corpus.

Another corpus (cross-corpus evaluation): `--label_map` renames its labels onto the model's. Its clips whose label the
model lacks are dropped, and the model's classes that the corpus lacks are excluded from scoring (never predicted:
the argmax runs over the scored classes' logits); both are named on the console and in the results JSON
(`test_unmapped_labels`, `test_excluded_model_classes`, `test_scored_classes`). A corpus that shares no label with the
model is an error that names both sides.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Optional

from datasets import ClassLabel, DatasetDict, concatenate_datasets

from hf_ser.arguments import (
    MEANINGFUL_EMPTY_LISTS,
    DataArguments,
    SERTrainingArguments,
    parse_args,
    refuse_dimensional,
)
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import CorpusReport, build_corpus, select_labels
from hf_ser.data.sources import corpus_records
from hf_ser.data.splits import SPEAKER_INDEPENDENT
from hf_ser.data.transforms import attach_transforms
from hf_ser.evaluation.bootstrap import read_interval
from hf_ser.evaluation.final import evaluate_and_save
from hf_ser.evaluation.metrics import compute_metrics
from hf_ser.inference.loading import load_model
from hf_ser.models.modeling_wav2vec2_ser import encodes_whisper_at_clip_length
from hf_ser.run_folder import DATA_REPORT_FILE, RUN_CONFIG_FILE, read_json
from hf_ser.training.trainer import SERTrainer

logger = logging.getLogger(__name__)

# Split -> metric prefix and file: test -> test_results.json, validation -> eval_results.json, all -> corpus_results.json
# (`all_results.json` is the Trainer's own combined file).
SPLITS = {"test": "test", "validation": "eval", "train": "train", "all": "corpus"}
EVALUATION_CONFIG_FILE = "evaluation_config.json"


def match_labels(
    model_labels: list[str], data_counts: dict[str, int], model_name: str, dataset: str
) -> tuple[list[str], list[str], dict[str, int]]:
    """The model's classes that the corpus has items of (in the model's order), the model's classes it lacks, and
    the corpus labels (after `label_map`) the model lacks with their clip counts; no label in common is an error
    naming both sides."""
    scored = [label for label in model_labels if data_counts.get(label)]
    excluded = [label for label in model_labels if not data_counts.get(label)]
    unmapped = {label: count for label, count in sorted(data_counts.items()) if label not in model_labels}
    if not scored:
        raise ValueError(
            f"the labels of dataset {dataset!r} share none with {model_name}'s id2label {model_labels}: "
            + "; ".join(
                part
                for part in (
                    f"the data has {sorted(unmapped)}, which the model does not know" if unmapped else "",
                    f"the data has no items of {excluded}",
                )
                if part
            )
            + '. Rename labels with --label_map (e.g. \'{"ang": "angry"}\') or select them with --labels.'
        )
    return scored, excluded, unmapped


def exclusions_message(excluded: list[str], unmapped: dict[str, int]) -> str:
    """One line naming what a cross-corpus evaluation leaves out; empty when nothing is."""
    parts = []
    if excluded:
        parts.append(
            f"model classes without items in the evaluated data, excluded from scoring and prediction: {excluded}"
        )
    if unmapped:
        counted = ", ".join(f"{label} ({count} clips)" for label, count in unmapped.items())
        parts.append(f"corpus labels the model does not know, their clips dropped: {counted}")
    return "; ".join(parts)


def evaluate_model(
    model_name_or_path: str, data_args: DataArguments, training_args: SERTrainingArguments, split: str = "test"
) -> dict:
    """Score MODEL on `split` of the corpus that `data_args` describes; writes `<prefix>_results.json`,
    `confusion_matrix.json` / `.png`, `data_report.json` and `evaluation_config.json` into `training_args.output_dir`
    and returns the metrics."""
    if split not in SPLITS:
        raise ValueError(f"--split {split!r}: use one of {sorted(SPLITS)}")
    output_dir = Path(training_args.output_dir)
    if Path(model_name_or_path).exists() and output_dir.resolve() == Path(model_name_or_path).resolve():
        raise ValueError(f"--output_dir {output_dir} is the model's folder: its own results would be overwritten")
    model, feature_extractor = load_model(model_name_or_path)
    data_args.label_targets = "hard"  # scores use hard labels: a soft-trained run's votes are not read
    model_labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]

    unknown = sorted(set(data_args.labels or []) - set(model_labels))
    if unknown:
        raise ValueError(f"--labels {unknown}: not among {model_name_or_path}'s labels {model_labels}")
    # Matched before decoding the corpus; the scored labels keep the model's order.
    records, _ = select_labels(corpus_records(data_args), data_args, CorpusReport(dataset=data_args.dataset))
    scored, excluded, unmapped = match_labels(
        model_labels, Counter(record["label"] for record in records), model_name_or_path, data_args.dataset
    )
    if excluded or unmapped:
        logger.warning("Cross-corpus evaluation: %s", exclusions_message(excluded, unmapped))
    data_args.labels = scored
    rate = getattr(feature_extractor, "sampling_rate", None)
    if rate and rate != data_args.sampling_rate:
        logger.info("Audio is resampled to the model's %d Hz (sampling_rate %d ignored)", rate, data_args.sampling_rate)
        data_args.sampling_rate = rate

    splits, label_names, report = build_corpus(data_args, seed=training_args.seed)
    if split == "all":
        splits = DatasetDict(all=concatenate_datasets(list(splits.values())))
    if split not in splits:  # a run trained without validation speakers (`hf-ser cv --refit`) has no validation split
        raise ValueError(f"--split {split}: these data keys give no {split} split (splits: {', '.join(splits)})")
    scored_ids = [model_labels.index(label) for label in scored] if excluded else None
    if scored_ids is not None:  # labels as the model's ids, so the loss is the model's own
        splits = DatasetDict({name: _as_model_ids(data, scored_ids, model_labels) for name, data in splits.items()})
    output_dir.mkdir(parents=True, exist_ok=True)
    report.save(output_dir)
    clip_length = encodes_whisper_at_clip_length(model.config)
    attach_transforms(
        splits, feature_extractor, data_args, training=False, whisper_clip_length=clip_length
    )  # whole clips
    trainer = SERTrainer(
        model=model,
        args=training_args,
        eval_dataset=splits[split],  # only to satisfy the Trainer's checks: predict is given each split
        data_collator=SERDataCollator(feature_extractor),
        processing_class=feature_extractor,
        compute_metrics=compute_metrics,
    )
    protocol = report.protocol if split in ("test", "validation") else f"{split} of the corpus"
    labels = {"scored_classes": scored, "excluded_model_classes": excluded, "unmapped_labels": unmapped}
    results = evaluate_and_save(
        trainer,
        splits,
        label_names,
        str(output_dir),
        protocol=protocol,
        prefixes={split: SPLITS[split]},
        scored_ids=scored_ids,
        extra=labels,
    )
    (output_dir / EVALUATION_CONFIG_FILE).write_text(
        json.dumps(
            {"model": model_name_or_path, "split": split, "data_args": asdict(data_args), **labels},
            indent=2,
            default=str,
        )
    )
    return results


# Run keys that say how audio is read and scored, not which corpus it is: still the defaults on another corpus.
AUDIO_KEYS = ("sampling_rate", "max_duration_seconds", "pad_to_max_duration", "eval_max_duration_seconds", "seed")
GENERIC_DATASETS = ("audiofolder", "csv", "jsonl")


def _corpus_identity(values: dict) -> tuple[str, Optional[str]]:
    """Which corpus data keys name: the dataset, and for the generic loaders the folder or manifest too (a named
    corpus is the same corpus wherever it lies)."""
    dataset = values.get("dataset") or DataArguments.__dataclass_fields__["dataset"].default
    where = values.get("data_dir") or values.get("manifest")
    return dataset, (str(Path(where).resolve()) if dataset in GENERIC_DATASETS and where else None)


def run_data_defaults(model: str) -> tuple[dict, dict]:
    """The data keys a run folder was trained with that differ from the defaults (from `run_config.json`, plus the
    seed, which draws automatic splits), and where each came from. When the run drew its speaker split itself, the
    speakers of its splits (`data_report.json`) are pinned, so a later change of the drawing cannot move them."""
    run_dir = Path(model)
    run_config = read_json(run_dir / RUN_CONFIG_FILE, missing_ok=True) if run_dir.is_dir() else None
    if run_config is None:
        return {}, {}
    data_values, training_values = run_config.get("data_args", {}), run_config.get("training_args", {})
    values = {}
    for cls, given in ((DataArguments, data_values), (SERTrainingArguments, {"seed": training_values.get("seed")})):
        for field_ in fields(cls):
            if field_.name not in given or given[field_.name] is None:
                continue
            default = field_.default_factory() if callable(field_.default_factory) else field_.default
            meaningful_empty = field_.name in MEANINGFUL_EMPTY_LISTS and given[field_.name] == []  # `cv --refit`
            if given[field_.name] not in (default, {}, []) or meaningful_empty:
                values[field_.name] = given[field_.name]
    sources = dict.fromkeys(values, str(run_dir / RUN_CONFIG_FILE))
    report = read_json(run_dir / DATA_REPORT_FILE, missing_ok=True) or {}
    drawn = data_values.get("validation_speakers") is None and data_values.get("test_speakers") is None
    split_speakers = {
        name: (report.get("splits", {}).get(name) or {}).get("speakers") for name in ("validation", "test")
    }
    if drawn and report.get("protocol") == SPEAKER_INDEPENDENT and all(split_speakers.values()):
        for name, speakers in split_speakers.items():
            values[f"{name}_speakers"] = speakers
            sources[f"{name}_speakers"] = f"{run_dir / DATA_REPORT_FILE}'s splits"
    return values, sources


def describe_sources(data_args: DataArguments, training_args: SERTrainingArguments) -> str:
    """`data keys: dataset, data_dir, ... from RUN/run_config.json; test_speakers from the command line`."""
    by_source: dict[str, list[str]] = {}
    for args in (data_args, training_args):
        for key, source in getattr(args, "value_sources", {}).items():
            if key in DataArguments.__dataclass_fields__ or key == "seed":
                by_source.setdefault(source, []).append(key)
    if not by_source:
        return "data keys: the defaults (no run_config.json, recipe or --key value gave any)"
    return "data keys: " + "; ".join(f"{', '.join(keys)} from {source}" for source, keys in by_source.items())


def _as_model_ids(data, scored_ids: list[int], model_labels: list[str]):
    """A split whose labels are positions in the scored labels, relabelled with the model's class ids."""
    features = data.features.copy()
    features["label"] = ClassLabel(names=model_labels)
    return data.map(
        lambda batch: {"label": [scored_ids[label] for label in batch["label"]]},
        batched=True,
        features=features,
        desc="Model label ids",
    )


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="hf-ser evaluate",
        usage="hf-ser evaluate MODEL [RECIPE.yaml] --output_dir DIR [--split test] [--key value ...]",
        description="Score a saved model on a corpus. Every other option is a recipe key (`hf-ser train --help`).",
    )
    parser.add_argument("model", help="run folder, saved checkpoint or Hub id")
    parser.add_argument("--split", default="test", help=f"which split to score: {', '.join(SPLITS)} (default test)")
    args, rest = parser.parse_known_args(argv)
    if not any(arg == "--output_dir" or arg.startswith("--output_dir=") for arg in rest):
        parser.error("give --output_dir: where the results go (never the model's own folder)")
    defaults, sources = run_data_defaults(args.model)
    _, data_args, training_args = parse_args(rest, defaults=defaults, defaults_source=sources)
    ours, runs = _corpus_identity(vars(data_args)), _corpus_identity(defaults)
    if defaults and ours != runs:
        # Cross-corpus: the run's speakers, labels and label map belong to its own corpus. Only another folder of the
        # same loader (`--data_dir` alone on an audiofolder run) keeps the loader: the dataset stays the run's.
        same_loader = ours[0] == runs[0]
        kept = {
            key: value for key, value in defaults.items() if key in AUDIO_KEYS or (same_loader and key == "dataset")
        }
        print(
            f"another corpus than the run's ({' at '.join(filter(None, ours))}, not {' at '.join(filter(None, runs))}): "
            f"the run's corpus keys {sorted(set(defaults) - set(kept))} are not used"
        )
        _, data_args, training_args = parse_args(rest, defaults=kept, defaults_source=sources)
    refuse_dimensional(data_args, "evaluate")
    print(describe_sources(data_args, training_args))
    results = evaluate_model(args.model, data_args, training_args, split=args.split)
    prefix = SPLITS[args.split]
    scores = ", ".join(
        f"{name} {results[f'{prefix}_{metric}']:.4f}"
        + (
            f" (95 % CI {interval[0]:.4f}–{interval[1]:.4f})"
            if (interval := read_interval(results, prefix, metric))
            else ""
        )
        for metric, name in (("ua", "UA"), ("wa", "WA"), ("macro_f1", "macro-F1"))
    )
    print(f"{args.split}: {scores} on {results[f'{prefix}_samples']} items -> {training_args.output_dir}")
    excluded = exclusions_message(results[f"{prefix}_excluded_model_classes"], results[f"{prefix}_unmapped_labels"])
    if excluded:
        print(f"scored classes {results[f'{prefix}_scored_classes']}; {excluded}")
    return results
