"""Where a recipe's records come from: a corpus in its official layout (hf_ser.data.corpora), the generated demo
corpus, or any `datasets` dataset; and what `load_audio` reads for a record."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from datasets import ClassLabel, DatasetDict

from hf_ser.arguments import DataArguments, value_source
from hf_ser.data.corpora import CORPORA, DIMENSIONAL_CORPORA, load_records

logger = logging.getLogger(__name__)


def audio_source(example: dict):
    """What `load_audio` reads for a row: the file path, or in-memory bytes for Hub datasets."""
    blob = example.get("bytes")
    return io.BytesIO(blob) if blob else example["path"]


def check_dimensions_available(args: DataArguments) -> None:
    """`task: dimensional` needs a corpus with dimension values, and the recipe's `dimensions` among them."""
    if args.dataset not in DIMENSIONAL_CORPORA:
        raise ValueError(
            f"task: dimensional needs a corpus with dimension values ({', '.join(DIMENSIONAL_CORPORA)}); dataset "
            f"{args.dataset!r} has emotion classes only"
        )
    available = DIMENSIONAL_CORPORA[args.dataset]
    unknown = [name for name in args.dimensions if available is not None and name not in available]
    if unknown:
        raise ValueError(
            f"dimensions{value_source(args, 'dimensions')}: {unknown} are not dimensions of dataset "
            f"{args.dataset!r} (it has {', '.join(available)})"
        )


def corpus_records(args: DataArguments) -> list[dict]:
    if args.dimensional:
        check_dimensions_available(args)
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
            with_votes=args.label_targets == "soft",
            dimensions=args.dimensions if args.dimensional else None,
        )
    return hub_records(args)


def hub_records(args: DataArguments) -> list[dict]:
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
