"""From a recipe's data keys to a `datasets.DatasetDict` of train / validation / test, plus a report of what was used.

Flow: corpus records (`sources`) -> label selection -> `Dataset.map` that decodes every file once to check it (fixed
work) -> split by speaker (`splits`) -> `set_transform` that decodes, crops and augments on the fly (`transforms`:
random work, redrawn every epoch).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, List, Value
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from hf_ser.arguments import DataArguments, value_source
from hf_ser.data.audio import AudioDecodeError, load_audio
from hf_ser.data.sources import audio_source, corpus_records
from hf_ser.data.splits import SPEAKER_INDEPENDENT, describe_split, split_corpus
from hf_ser.data.votes import LABEL_DISTRIBUTION, describe_votes, vote_distributions
from hf_ser.run_folder import DATA_REPORT_FILE

logger = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4
MIN_DURATION_SECONDS = 0.03  # below one wav2vec2 receptive field (25 ms) there is nothing to encode
SHORT_NOTE_SECONDS = 0.5  # kept, but hardly long enough to carry an emotion: worth a note in the report


@dataclass
class CorpusReport:
    """What went into each split, what was skipped and why; written to `output_dir/data_report.json`."""

    dataset: str
    labels: list = field(default_factory=list)  # the classes; with `task: dimensional` the dimensions
    task: str = "categorical"
    protocol: str = SPEAKER_INDEPENDENT
    split_rule: str = ""
    splits: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    label_votes: dict = field(default_factory=dict)  # `label_targets: soft`: what the vote distributions hold

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def save(self, output_dir: str | Path) -> Path:
        path = Path(output_dir) / DATA_REPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return path

    def split_summary(self, max_speakers: int = 8) -> str:
        """What each split holds (items, minutes, speakers, items per class), the protocol in words, the classes a
        split lacks and the skipped items: what a run prints when it starts."""
        items = sum(split["items"] for split in self.splits.values())
        lines = [
            f"{self.dataset}: {items} items, {len(self.labels)} "
            f"{'dimensions' if self.task == 'dimensional' else 'labels'} ({', '.join(self.labels)})",
            f"protocol: {self.protocol} ({self.split_rule})" if self.split_rule else f"protocol: {self.protocol}",
        ]
        width = max(len(name) for name in self.splits) if self.splits else 0
        for name, split in self.splits.items():
            speakers = split["speakers"]
            shown = ", ".join(speakers[:max_speakers]) + (", ..." if len(speakers) > max_speakers else "")
            per_label = ", ".join(f"{label} {split['per_label'].get(label, 0)}" for label in self.labels)
            if "dimension_means" in split:
                per_label = "mean " + ", ".join(f"{name} {mean:.2f}" for name, mean in split["dimension_means"].items())
            lines.append(
                f"  {name:<{width}} {split['items']:>6} items {split['seconds'] / 60:6.1f} min  "
                f"{len(speakers)} speaker(s) ({shown or 'none'}); {per_label}"
            )
        lines += [f"  {absent_label_warning(name, split, self.labels)}" for name, split in self.absent_labels()]
        lines += [f"  {describe_votes(self.label_votes)}"] if self.label_votes else []
        return "\n".join(lines + [self.problems()])

    def absent_labels(self) -> list[tuple[str, dict]]:
        """The splits that lack a class of the label set, with their entries in `splits`."""
        return [(name, split) for name, split in self.splits.items() if split.get("absent_labels")]

    def problems(self, limit: int = 50) -> str:
        """Skipped items with their reasons, then notes on kept ones; at most `limit` lines of each."""
        lines = [f"  skipped {len(self.skipped)} item(s)" + (":" if self.skipped else "")]
        lines += [f"    {item['path']}: {item['reason']}" for item in self.skipped[:limit]]
        lines += [f"  note: {item['path']}: {item['reason']}" for item in self.notes[:limit]]
        if len(self.skipped) > limit or len(self.notes) > limit:
            lines.append(f"  ... more in data_report.json ({len(self.skipped)} skipped, {len(self.notes)} notes)")
        return "\n".join(lines)


def absent_label_warning(name: str, split: dict, labels: list[str]) -> str:
    """One sentence on the classes a split lacks and what follows for training or scoring."""
    absent = split["absent_labels"]
    if name == "train":
        consequence = "the model cannot learn them"
    else:
        consequence = (
            f"its UA and macro-F1 average over the {len(labels) - len(absent)} classes present, and "
            f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not scored there"
        )
        consequence += " (validation selects the checkpoint)" if name == "validation" else ""
    return f"The {name} split has no item of {', '.join(absent)}: {consequence}"


def select_labels(records: list[dict], args: DataArguments, report: CorpusReport) -> tuple[list[dict], list[str]]:
    """Rename labels with `label_map`, keep those in `labels`; every dropped record is reported."""
    kept, seen_paths = [], set()
    for record in records:
        label = record["label"]
        label = args.label_map.get(label, label) if label is not None else None
        if label is None:
            report.skip(record["path"], record.get("skip_reason") or "missing label")
        elif args.labels and label not in args.labels:
            report.skip(record["path"], f"label {label!r} is not in the label set {args.labels}")
        elif record["path"] in seen_paths and not record.get("bytes"):
            report.skip(record["path"], "listed twice; the first entry is kept")
        else:
            seen_paths.add(record["path"])
            kept.append({**record, "label": label})
    data_labels = sorted({record["label"] for record in records if record["label"] is not None})
    unused = sorted(set(args.label_map) - set(data_labels))
    if unused:
        logger.warning("label_map keys %s match no label of the data (its labels: %s)", unused, data_labels)
    label_names = list(args.labels) if args.labels else sorted({record["label"] for record in kept})
    mapped = [args.label_map.get(label, label) for label in data_labels]
    require_every_label(label_names, mapped, args, "in the data")
    return kept, label_names


def select_dimensions(records: list[dict], args: DataArguments, report: CorpusReport) -> list[dict]:
    """`task: dimensional`: keep the records with a value of every recipe dimension, whatever their class (an IEMOCAP
    `xxx` utterance has dimensions); each kept record's label becomes its values in `dimensions` order. The others
    are reported with their reason."""
    kept, seen_paths = [], set()
    for record in records:
        values = record.get("dimensions")
        if values is None:
            reason = record.get("dimension_problem") or record.get("skip_reason") or "no dimension values"
            report.skip(record["path"], reason)
        elif record["path"] in seen_paths and not record.get("bytes"):
            report.skip(record["path"], "listed twice; the first entry is kept")
        else:
            seen_paths.add(record["path"])
            kept.append({**record, "label": [float(values[name]) for name in args.dimensions]})
    return kept


def select_corpus_split(records: list[dict], args: DataArguments, report: CorpusReport) -> list[dict]:
    """`use_corpus_split`: the records of the corpus's train / validation / test sets; the others are reported."""
    if not any(record.get("corpus_split_name") for record in records):
        raise ValueError(f"use_corpus_split: dataset {args.dataset!r} has no partition of its own (MSP-Podcast has)")
    kept = []
    for record in records:
        if record.get("corpus_split") is None:
            report.skip(
                record["path"],
                f"in the corpus's set {record.get('corpus_split_name')!r}, not train, "
                "validation or test (use_corpus_split)",
            )
        else:
            kept.append(record)
    return kept


def require_every_label(label_names: list[str], labels: list[str], args: DataArguments, where: str) -> None:
    """A class without items cannot be learned or scored: name the labels that have none."""
    empty = [name for name in label_names if name not in set(labels)]
    if empty:
        raise ValueError(
            f"dataset {args.dataset!r}: label(s) {empty} have no items {where} (labels with items: "
            f"{sorted(set(labels))}); fix `labels`{value_source(args, 'labels')} or `label_map` (applied first: "
            f"{args.label_map or 'none'})"
        )


def _inspect(example: dict, sampling_rate: int) -> dict:
    """Decode once to find files that cannot be trained on; duration for length grouping; a hash of the decoded
    samples, which finds the same recording under two names (or re-encoded losslessly) without a second read."""
    try:
        waveform = load_audio(audio_source(example), sampling_rate)
    except AudioDecodeError as error:
        return {"duration": 0.0, "problem": str(error).split(": ", 1)[-1], "note": "", "content_hash": ""}
    duration = len(waveform) / sampling_rate
    content_hash = hashlib.blake2b(waveform.tobytes(), digest_size=16).hexdigest()
    if duration < MIN_DURATION_SECONDS:
        problem = f"shorter than {MIN_DURATION_SECONDS} s ({duration:.3f} s)"
        return {"duration": duration, "problem": problem, "note": "", "content_hash": content_hash}
    note = "silent (peak below 1e-4)" if np.abs(waveform).max() < SILENCE_PEAK else ""
    if duration < SHORT_NOTE_SECONDS:
        note = "; ".join(filter(None, [note, f"very short ({duration:.3f} s, under {SHORT_NOTE_SECONDS} s)"]))
    return {"duration": duration, "problem": "", "note": note, "content_hash": content_hash}


@contextmanager
def quiet_dataset_passes():
    """No `datasets` progress bar for hf-ser's own map / filter / cast passes (a console full of bars hides the lines
    that matter); the passes that take time log a line instead. The previous setting is restored afterwards."""
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


@dataclass
class CheckedCorpus:
    """Every usable clip of a corpus, decoded once to check it (columns path, label, speaker, duration), before any
    split; what was skipped is in `report`. Cross-validation and seeds split one of these again for each run."""

    dataset: Dataset
    label_names: list[str]
    report: CorpusReport


def check_corpus(args: DataArguments) -> CheckedCorpus:
    """The recipe's corpus read, label-selected and decoded once (the fixed work of `build_corpus`)."""
    with quiet_dataset_passes():
        return _check_corpus(args)


def _check_corpus(args: DataArguments) -> CheckedCorpus:
    report = CorpusReport(dataset=args.dataset, task=args.task)
    records = corpus_records(args)
    if args.dimensional:
        records, label_names = select_dimensions(records, args, report), list(args.dimensions)
    else:
        records, label_names = select_labels(records, args, report)
    if args.use_corpus_split:
        records = select_corpus_split(records, args, report)
    if not records:
        raise ValueError(f"dataset {args.dataset!r}: no usable records (skipped: {report.skipped[:3]}...)")
    keys = ("path", "label", "speaker") + (("corpus_split",) if args.use_corpus_split else ())
    columns = {key: [record.get(key) for record in records] for key in keys}
    if args.label_targets == "soft":
        columns[LABEL_DISTRIBUTION], report.label_votes = vote_distributions(records, label_names, args.label_map)
    if any(record.get("bytes") for record in records):
        columns["bytes"] = [record.get("bytes") for record in records]
    logger.info("Checking %d audio files of %s (each decoded once) ...", len(records), args.dataset)
    started = time.perf_counter()
    dataset = Dataset.from_dict(columns).map(
        _inspect, fn_kwargs={"sampling_rate": args.sampling_rate}, desc="Checking audio", load_from_cache_file=False
    )
    logger.info("Checked %d audio files in %.1f s", len(records), time.perf_counter() - started)
    keep, first_with_hash = [], {}
    for index, row in enumerate(dataset.select_columns(["path", "problem", "note", "content_hash"])):
        if row["problem"]:
            if args.on_bad_audio == "error":
                raise AudioDecodeError(f"{row['path']}: {row['problem']} (set on_bad_audio: skip to drop and report)")
            report.skip(row["path"], row["problem"])
        elif row["content_hash"] in first_with_hash:  # the same audio twice would sit in two splits or count double
            report.skip(row["path"], f"duplicate of {first_with_hash[row['content_hash']]}")
        else:
            first_with_hash[row["content_hash"]] = row["path"]
            keep.append(index)
            if row["note"]:
                report.notes.append({"path": row["path"], "reason": row["note"]})
    dataset = dataset.select(keep).flatten_indices().remove_columns(["problem", "note", "content_hash"])
    if args.dimensional:
        dataset = dataset.cast_column("label", List(Value("float32"), length=len(label_names)))
    else:
        require_every_label(label_names, dataset["label"], args, "after dropping bad audio")
        dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    report.labels = label_names
    return CheckedCorpus(dataset, label_names, report)


def split_checked_corpus(
    corpus: CheckedCorpus, args: DataArguments, seed: int = 42
) -> tuple[DatasetDict, list[str], CorpusReport]:
    """A checked corpus split by the recipe's speakers (or fractions); the report is this run's own copy."""
    with quiet_dataset_passes():
        return _split_checked_corpus(corpus, args, seed)


def _split_checked_corpus(
    corpus: CheckedCorpus, args: DataArguments, seed: int
) -> tuple[DatasetDict, list[str], CorpusReport]:
    report = copy.deepcopy(corpus.report)
    label_names = corpus.label_names
    if args.dataset != report.dataset or (args.labels and list(args.labels) != label_names):
        raise ValueError(
            f"the checked corpus is {report.dataset!r} with labels {label_names}, but the recipe asks for "
            f"{args.dataset!r} with labels {args.labels}: check the corpus with these data arguments"
        )
    dataset = corpus.dataset
    splits, report.protocol = split_corpus(dataset, args, seed)
    if args.max_train_samples is not None and args.max_train_samples < len(splits["train"]):
        # A seeded random subset: the first rows would be one or two speakers of a corpus listed speaker by speaker.
        total = len(splits["train"])
        chosen = np.random.default_rng(seed).choice(total, size=args.max_train_samples, replace=False)
        splits["train"] = splits["train"].select(sorted(chosen.tolist())).flatten_indices()
        report.notes.append(
            {
                "path": "train split",
                "reason": f"max_train_samples: trained on a seeded random "
                f"{args.max_train_samples} of the {total} training clips",
            }
        )
    report.split_rule = describe_split(args, seed, report.protocol)
    for name, split in splits.items():
        report.splits[name] = {
            "items": len(split),
            "seconds": float(sum(split["duration"])),
            "speakers": sorted({s for s in split["speaker"] if s is not None}),
        }
        if args.dimensional:  # the mean of each dimension instead of counts per class
            means = np.asarray(split["label"], dtype=float).mean(axis=0)
            report.splits[name].update(
                per_label={}, dimension_means=dict(zip(label_names, means.tolist())), absent_labels=[]
            )
        else:
            per_label = Counter(label_names[i] for i in split["label"])
            absent = [label for label in label_names if not per_label[label]]
            report.splits[name].update(per_label=dict(per_label), absent_labels=absent)
    for name, split in report.absent_labels():
        logger.warning("%s (its speakers: %s)", absent_label_warning(name, split, label_names), split["speakers"])
    if report.skipped:
        logger.warning("Skipped %d bad item(s); all are listed in data_report.json", len(report.skipped))
    return splits, label_names, report


def build_corpus(args: DataArguments, seed: int = 42) -> tuple[DatasetDict, list[str], CorpusReport]:
    """The recipe's corpus as train / validation / test `Dataset`s with columns path, label, speaker, duration."""
    return split_checked_corpus(check_corpus(args), args, seed)


def balanced_class_weights(train: Dataset, num_labels: int) -> list[float]:
    """Inverse class frequency, normalised so the weights average to one (scikit-learn's `balanced`). With soft
    targets (a `label_distribution` column) a class's frequency is its summed target mass, the number of items the
    soft loss spends on it: one-hot targets give the hard weights."""
    if LABEL_DISTRIBUTION in train.column_names:
        counts = np.asarray(list(train.with_format(None)[LABEL_DISTRIBUTION]), dtype=float).sum(axis=0)
    else:
        counts = np.bincount(np.asarray(train["label"]), minlength=num_labels).astype(float)
    return [float(w) for w in len(train) / (num_labels * np.clip(counts, 1, None))]
