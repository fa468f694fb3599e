"""From a recipe's data keys to a `datasets.DatasetDict` of train / validation / test, plus a report of what was used.

Flow: corpus records -> label selection -> `Dataset.map` that decodes every file once to check it (fixed work) ->
split by speaker -> `set_transform` that decodes, crops and augments on the fly (random work, redrawn every epoch).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import logging
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict
from transformers import TrainerCallback

from hf_ser.arguments import DataArguments
from hf_ser.data.audio import AudioDecodeError, crop_or_pad, load_audio
from hf_ser.data.augment import augment, build_augmenter
from hf_ser.data.collator import clip_features
from hf_ser.data.corpora import CORPORA, load_records
from hf_ser.run_folder import DATA_REPORT_FILE

logger = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4
MIN_DURATION_SECONDS = 0.03  # below one wav2vec2 receptive field (25 ms) there is nothing to encode
SHORT_NOTE_SECONDS = 0.5  # kept, but hardly long enough to carry an emotion: worth a note in the report
SPEAKER_INDEPENDENT = "speaker-independent"
SPEAKER_DEPENDENT = "speaker-dependent"


@dataclass
class CorpusReport:
    """What went into each split, what was skipped and why; written to `output_dir/data_report.json`."""

    dataset: str
    labels: list = field(default_factory=list)
    protocol: str = SPEAKER_INDEPENDENT
    splits: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def save(self, output_dir: str | Path) -> Path:
        path = Path(output_dir) / DATA_REPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return path

    def summary(self) -> str:
        lines = [f"{self.dataset}: {self.protocol}; labels {self.labels}"]
        for name, split in self.splits.items():
            lines.append(
                f"  {name}: {split['items']} items, {split['seconds'] / 60:.1f} min, speakers {split['speakers']}"
            )
        return "\n".join(lines + [self.problems()])

    def problems(self, limit: int = 50) -> str:
        """Skipped items with their reasons, then notes on kept ones; at most `limit` lines of each."""
        lines = [f"  skipped {len(self.skipped)} item(s)" + (":" if self.skipped else "")]
        lines += [f"    {item['path']}: {item['reason']}" for item in self.skipped[:limit]]
        lines += [f"  note: {item['path']}: {item['reason']}" for item in self.notes[:limit]]
        if len(self.skipped) > limit or len(self.notes) > limit:
            lines.append(f"  ... more in data_report.json ({len(self.skipped)} skipped, {len(self.notes)} notes)")
        return "\n".join(lines)


def _audio_source(example: dict):
    """What `load_audio` reads for a row: the file path, or in-memory bytes for Hub datasets."""
    blob = example.get("bytes")
    return io.BytesIO(blob) if blob else example["path"]


def _corpus_records(args: DataArguments) -> list[dict]:
    if args.dataset == "demo":
        from hf_ser.data.demo_corpus import DEMO_SPEAKER_PATTERN, generate_demo_corpus

        root = Path(args.data_dir or Path.home() / ".cache" / "hf_ser" / "demo_corpus")
        return load_records("audiofolder", str(generate_demo_corpus(root)), speaker_pattern=DEMO_SPEAKER_PATTERN)
    if args.dataset in CORPORA:
        return load_records(
            args.dataset,
            args.data_dir,
            manifest=args.manifest,
            speaker_pattern=args.speaker_pattern,
            allow_absolute_paths=args.allow_absolute_paths,
        )
    return _hub_records(args)


def _hub_records(args: DataArguments) -> list[dict]:
    """Any `datasets` dataset (Hub id or local dataset folder) with an audio and a label column; all splits pooled,
    since hf-ser splits by speaker itself."""
    from datasets import Audio, concatenate_datasets, load_dataset

    loaded = load_dataset(args.dataset, args.dataset_config_name)
    pooled = concatenate_datasets(list(loaded.values())) if isinstance(loaded, DatasetDict) else loaded
    for column in (args.audio_column, args.label_column, args.speaker_column):
        if column and column not in pooled.column_names:
            raise KeyError(f"dataset {args.dataset!r} has no column {column!r} (columns: {pooled.column_names})")
    pooled = pooled.cast_column(args.audio_column, Audio(decode=False))
    label_feature = pooled.features[args.label_column]
    records = []
    for row in pooled:
        label = row[args.label_column]
        if isinstance(label_feature, ClassLabel) and label is not None:
            label = label_feature.int2str(label)
        audio = row[args.audio_column]
        records.append(
            {
                "path": audio.get("path") or f"{args.dataset}[{len(records)}]",
                "bytes": audio.get("bytes"),
                "label": None if label is None else str(label),
                "speaker": str(row[args.speaker_column]) if args.speaker_column else None,
            }
        )
    return records


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


def require_every_label(label_names: list[str], labels: list[str], args: DataArguments, where: str) -> None:
    """A class without items cannot be learned or scored: name the labels that have none."""
    empty = [name for name in label_names if name not in set(labels)]
    if empty:
        raise ValueError(
            f"dataset {args.dataset!r}: label(s) {empty} have no items {where} (labels with items: "
            f"{sorted(set(labels))}); fix `labels` or `label_map` (applied first: {args.label_map or 'none'})"
        )


def _inspect(example: dict, sampling_rate: int) -> dict:
    """Decode once to find files that cannot be trained on; duration for length grouping; a hash of the decoded
    samples, which finds the same recording under two names (or re-encoded losslessly) without a second read."""
    try:
        waveform = load_audio(_audio_source(example), sampling_rate)
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


@dataclass
class CheckedCorpus:
    """Every usable clip of a corpus, decoded once to check it (columns path, label, speaker, duration), before any
    split; what was skipped is in `report`. Cross-validation and seeds split one of these again for each run."""

    dataset: Dataset
    label_names: list[str]
    report: CorpusReport


def check_corpus(args: DataArguments) -> CheckedCorpus:
    """The recipe's corpus read, label-selected and decoded once (the fixed work of `build_corpus`)."""
    report = CorpusReport(dataset=args.dataset)
    records, label_names = select_labels(_corpus_records(args), args, report)
    if not records:
        raise ValueError(f"dataset {args.dataset!r}: no usable records (skipped: {report.skipped[:3]}...)")
    columns = {key: [record.get(key) for record in records] for key in ("path", "label", "speaker")}
    if any(record.get("bytes") for record in records):
        columns["bytes"] = [record.get("bytes") for record in records]
    dataset = Dataset.from_dict(columns).map(
        _inspect, fn_kwargs={"sampling_rate": args.sampling_rate}, desc="Checking audio", load_from_cache_file=False
    )
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
    require_every_label(label_names, dataset["label"], args, "after dropping bad audio")
    dataset = dataset.cast_column("label", ClassLabel(names=label_names))
    report.labels = label_names
    return CheckedCorpus(dataset, label_names, report)


def split_checked_corpus(
    corpus: CheckedCorpus, args: DataArguments, seed: int = 42
) -> tuple[DatasetDict, list[str], CorpusReport]:
    """A checked corpus split by the recipe's speakers (or fractions); the report is this run's own copy."""
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
    for name, split in splits.items():
        report.splits[name] = {
            "items": len(split),
            "seconds": float(sum(split["duration"])),
            "speakers": sorted({s for s in split["speaker"] if s is not None}),
            "per_label": dict(Counter(label_names[i] for i in split["label"])),
        }
    if report.skipped:
        logger.warning("Skipped %d bad item(s); all are listed in data_report.json", len(report.skipped))
    return splits, label_names, report


def build_corpus(args: DataArguments, seed: int = 42) -> tuple[DatasetDict, list[str], CorpusReport]:
    """The recipe's corpus as train / validation / test `Dataset`s with columns path, label, speaker, duration."""
    return split_checked_corpus(check_corpus(args), args, seed)


def check_disjoint_speakers(speaker_sets: dict[str, set]) -> None:
    """Refuse a split in which a speaker appears in two of train / validation / test."""
    names = list(speaker_sets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = speaker_sets[first] & speaker_sets[second]
            if shared:
                raise ValueError(
                    f"speaker(s) {sorted(shared)} are in both {first} and {second}: that leaks speakers into "
                    "evaluation. Fix the speaker lists, or set speaker_dependent: true to accept it knowingly."
                )


def split_corpus(dataset: Dataset, args: DataArguments, seed: int) -> tuple[DatasetDict, str]:
    speakers = dataset["speaker"]
    known = [s for s in speakers if s is not None]
    if args.speaker_dependent or not known:
        return _split_by_file(dataset, args, seed), SPEAKER_DEPENDENT
    if len(known) < len(speakers):
        raise ValueError(f"{len(speakers) - len(known)} item(s) have no speaker; give every item one or none")
    all_speakers = sorted(set(known))
    chosen = {"train": args.train_speakers, "validation": args.validation_speakers, "test": args.test_speakers}
    for name, listed in chosen.items():
        unknown = sorted(set(listed or []) - set(all_speakers))
        if unknown:
            raise ValueError(f"{name}_speakers {unknown} are not in the corpus (its speakers: {all_speakers})")
    if args.validation_speakers is None and args.test_speakers is None:
        order = list(all_speakers)
        random.Random(seed).shuffle(order)
        n_test = max(1, round(args.test_fraction * len(order)))
        n_validation = max(1, round(args.validation_fraction * len(order)))
        if n_test + n_validation >= len(order):
            raise ValueError(f"{len(order)} speakers are too few for a speaker-independent train/validation/test split")
        chosen["test"], chosen["validation"] = order[:n_test], order[n_test : n_test + n_validation]
    elif args.validation_speakers is None or args.test_speakers is None:
        raise ValueError("give both validation_speakers and test_speakers (or neither, for an automatic split)")
    held_out = set(chosen["validation"]) | set(chosen["test"])
    chosen["train"] = chosen["train"] or [s for s in all_speakers if s not in held_out]
    check_disjoint_speakers({name: set(value) for name, value in chosen.items()})
    splits = DatasetDict()
    for name, members in chosen.items():
        members = set(members)
        splits[name] = dataset.filter(lambda speaker, members=members: speaker in members, input_columns="speaker")
        if len(splits[name]) == 0:
            raise ValueError(f"the {name} split is empty (speakers {sorted(members)})")
    return splits, SPEAKER_INDEPENDENT


def _split_by_file(dataset: Dataset, args: DataArguments, seed: int) -> DatasetDict:
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    labels = np.asarray(dataset["label"])
    held_out = args.validation_fraction + args.test_fraction
    train, rest = train_test_split(indices, test_size=held_out, stratify=labels, random_state=seed)
    validation, test = train_test_split(
        rest, test_size=args.test_fraction / held_out, stratify=labels[rest], random_state=seed
    )
    return DatasetDict(
        train=dataset.select(np.sort(train)),
        validation=dataset.select(np.sort(validation)),
        test=dataset.select(np.sort(test)),
    )


class AudioTransform:
    """The `set_transform` function: decode, crop (random for training, centred for evaluation), augment (training
    only), then the model's feature extractor.

    Training randomness (crop offset, augmentation) is drawn from a generator keyed by (seed, epoch, file, draw), not
    from a global RNG: the Trainer fetches the next batch before it restores the RNG state of a checkpoint, so global
    draws would differ after a resume. Keyed draws make an interrupted and resumed run see the same crops as an
    uninterrupted one, independent of dataloader workers. `set_epoch` (called by `EpochCallback`) moves to the next
    epoch's draws; repeated reads of one item within an epoch still differ.
    """

    def __init__(self, feature_extractor, args: DataArguments, train: bool, seed: int = 0):
        self.feature_extractor, self.train, self.seed = feature_extractor, train, seed
        self.augmenter = build_augmenter(args.augmentations) if train else None
        self.sampling_rate = args.sampling_rate
        self.window = args.max_duration_seconds if train else args.eval_max_duration_seconds
        self.pad = train and args.pad_to_max_duration
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.draws = epoch, Counter()

    def _generator(self, path: str) -> np.random.Generator:
        file_key = int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "little")
        self.draws[path] += 1
        return np.random.default_rng([self.seed, self.epoch, file_key, self.draws[path]])

    def __call__(self, batch: dict) -> dict:
        waveforms = []
        for index in range(len(batch["path"])):
            example = {key: values[index] for key, values in batch.items()}
            try:
                waveform = load_audio(_audio_source(example), self.sampling_rate)
            except AudioDecodeError as error:
                raise AudioDecodeError(
                    f"{error}. It passed the audio check when the run started, so it was deleted or changed during "
                    "the run: restore it (training resumes from the last checkpoint) or remove it from the corpus"
                ) from None
            rng = self._generator(example["path"]) if self.train else None
            if self.window:
                waveform = crop_or_pad(waveform, int(self.window * self.sampling_rate), random=self.train, rng=rng)
            waveforms.append(augment(self.augmenter, waveform, self.sampling_rate, rng=rng) if self.train else waveform)
        # `pad_to_max_duration`: the extractor pads, so the mask marks the padding as padding (not as silent audio).
        pad_to = int(self.window * self.sampling_rate) if self.pad else None
        return {**clip_features(self.feature_extractor, waveforms, self.sampling_rate, pad_to), "label": batch["label"]}


class EpochCallback(TrainerCallback):
    """Tells the training split's `AudioTransform` which epoch starts, so its keyed random draws follow the epoch; on
    a resume the Trainer restores `state.epoch` before this runs."""

    def __init__(self, train: Dataset):
        self.train = train

    def on_epoch_begin(self, args, state, control, **kwargs):
        transform = self.train.format["format_kwargs"].get("transform")
        if isinstance(transform, AudioTransform):
            transform.set_epoch(int(state.epoch + 1e-6))


def attach_transforms(
    splits: DatasetDict, feature_extractor, args: DataArguments, seed: int = 0, training: bool = True
) -> DatasetDict:
    """Training transforms (random crop, augmentation) on the `train` split when `training`; evaluation transforms
    (whole clips) everywhere else."""
    for name, split in splits.items():
        split.set_transform(AudioTransform(feature_extractor, args, train=training and name == "train", seed=seed))
    return splits


def clean_training_view(train: Dataset, feature_extractor, args: DataArguments, seed: int = 0) -> Dataset:
    """The training split with the training crop (random, `max_duration_seconds`) but no augmentation: what precise
    BatchNorm recomputes statistics on (`hf_ser.training.callbacks.PreciseBatchNormCallback`). A new view; `train` keeps its
    own transform."""
    clean_args = dataclasses.replace(args, augmentations=[])
    return train.with_transform(AudioTransform(feature_extractor, clean_args, train=True, seed=seed))


def balanced_class_weights(train: Dataset, num_labels: int) -> list[float]:
    """Inverse class frequency, normalised so the weights average to one (scikit-learn's `balanced`)."""
    counts = np.bincount(np.asarray(train["label"]), minlength=num_labels).astype(float)
    return [float(w) for w in len(train) / (num_labels * np.clip(counts, 1, None))]
