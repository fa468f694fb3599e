"""Speaker-disjoint train / validation / test splits of a checked corpus: the recipe's speaker lists, a seeded split
by speaker fractions that keeps every class in every split where the speakers allow it, or (only when asked) a
speaker-dependent split by file."""

from __future__ import annotations

import logging
import random

import numpy as np
from datasets import Dataset, DatasetDict

from hf_ser.arguments import CLEAR, DataArguments, value_source

logger = logging.getLogger(__name__)


SPEAKER_INDEPENDENT = "speaker-independent"
SPEAKER_DEPENDENT = "speaker-dependent"
# Seeded speaker assignments tried by the automatic split; the first that puts every class in every split wins.
SPLIT_CANDIDATES = 1000


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
    if args.use_corpus_split:
        return corpus_partition(dataset), SPEAKER_INDEPENDENT
    speakers = dataset["speaker"]
    known = [s for s in speakers if s is not None]
    chosen = {"train": args.train_speakers, "validation": args.validation_speakers, "test": args.test_speakers}
    if not known and not args.speaker_dependent:
        for name, listed in chosen.items():
            if listed:
                raise ValueError(
                    f"{_speaker_key(args, name)}: dataset {args.dataset!r} has no speakers to split by (an audiofolder "
                    f"takes them from speaker_pattern); clear them with --{name}_speakers {CLEAR}"
                )
    if args.speaker_dependent or not known:
        return _split_by_file(dataset, args, seed), SPEAKER_DEPENDENT
    if len(known) < len(speakers):
        raise ValueError(f"{len(speakers) - len(known)} item(s) have no speaker; give every item one or none")
    all_speakers = sorted(set(known))
    for name, listed in chosen.items():
        unknown = sorted(set(listed or []) - set(all_speakers))
        if unknown:
            some = all_speakers[:20] + (["..."] if len(all_speakers) > 20 else [])
            partly = f"{unknown} of " if len(unknown) < len(listed) else ""
            raise ValueError(
                f"{partly}{_speaker_key(args, name)} are not speakers of this corpus (its speakers: {some}); give "
                f"speakers of it, or clear them with --{name}_speakers {CLEAR}"
            )
    if args.validation_speakers is None and args.test_speakers is None:
        pool = [s for s in all_speakers if s not in set(args.train_speakers or [])]
        n_test = max(1, round(args.test_fraction * len(pool)))
        n_validation = max(1, round(args.validation_fraction * len(pool)))
        if n_test + n_validation >= len(pool):
            raise ValueError(f"{len(pool)} speakers are too few for a speaker-independent train/validation/test split")
        chosen["validation"], chosen["test"] = stratified_speaker_split(
            speakers, strata(dataset), pool, n_validation, n_test, seed, train=args.train_speakers
        )
    elif args.validation_speakers is None or args.test_speakers is None:
        given = "validation" if args.test_speakers is None else "test"
        raise ValueError(
            f"give both validation_speakers and test_speakers, or neither for an automatic split: "
            f"{_speaker_key(args, given)} is set, the other is not; clear it with --{given}_speakers {CLEAR}"
        )
    held_out = set(chosen["validation"]) | set(chosen["test"])
    chosen["train"] = chosen["train"] or [s for s in all_speakers if s not in held_out]
    check_disjoint_speakers({name: set(value) for name, value in chosen.items()})
    splits = DatasetDict()
    for name, members in chosen.items():
        if name == "validation" and args.validation_speakers == []:
            continue  # none asked for: a fixed-length run with nothing to select on (`hf-ser cv --refit`)
        members = set(members)
        splits[name] = dataset.filter(lambda speaker, members=members: speaker in members, input_columns="speaker")
        if len(splits[name]) == 0:
            raise ValueError(f"the {name} split is empty (speakers {sorted(members)})")
    return splits, SPEAKER_INDEPENDENT


def corpus_partition(dataset: Dataset) -> DatasetDict:
    """The corpus's own train / validation / test partition (`corpus_split` column: MSP-Podcast's Split_Set), checked
    to keep every known speaker in one split."""
    splits = DatasetDict()
    for name in ("train", "validation", "test"):
        splits[name] = dataset.filter(lambda split, name=name: split == name, input_columns="corpus_split")
        if len(splits[name]) == 0:
            raise ValueError(f"use_corpus_split: the corpus's partition has no {name} item")
    check_disjoint_speakers({name: {s for s in split["speaker"] if s is not None} for name, split in splits.items()})
    return splits


def strata(dataset: Dataset) -> list:
    """What splits keep balanced: the class of each item; one stratum for dimensional targets (value lists)."""
    labels = dataset["label"]
    return [0] * len(labels) if labels and isinstance(labels[0], list) else list(labels)


def _speaker_key(args: DataArguments, split: str) -> str:
    """`validation_speakers ['09', '10'] (from recipes/base.yaml)`: a speaker key, its value and where it came from."""
    key = f"{split}_speakers"
    return f"{key} {getattr(args, key)}{value_source(args, key)}"


def describe_split(args: DataArguments, seed: int, protocol: str) -> str:
    """How the items were assigned to splits, in words: for the console, `data_report.json` and the card."""
    if args.use_corpus_split:
        return "the corpus's own partition (use_corpus_split); no known speaker in two splits"
    if protocol == SPEAKER_DEPENDENT:
        return "split by file, stratified by label: speakers appear in more than one split"
    if args.validation_speakers is None and args.test_speakers is None:
        return (
            f"no speaker in two splits; validation and test speakers drawn automatically (seed {seed}, fractions "
            f"{args.validation_fraction:g} / {args.test_fraction:g}), chosen to put every class in every split"
        )
    if args.validation_speakers == []:
        return "no speaker in both training and test; speakers as listed, no validation split"
    return "no speaker in two splits; speakers as listed (recipe or command line)"


def stratified_speaker_split(
    speakers: list, labels: list, pool: list, n_validation: int, n_test: int, seed: int, train: list | None = None
) -> tuple[list, list]:
    """Validation and test speakers drawn from `pool` by seeded shuffles, keeping the assignment whose train /
    validation / test splits hold the most (split, class) pairs: every class in every split where the speakers allow
    it (on a tie, the one whose training split holds more classes). The first shuffle is the plain seeded one, kept
    whenever it already covers every class; the search stops at the first full cover, so the result depends on the
    seed alone."""
    classes_of: dict = {}
    for speaker, label in zip(speakers, labels):
        classes_of.setdefault(speaker, set()).add(label)
    n_classes = len(set(labels))
    rng = random.Random(seed)
    best, best_cover = None, (-1, -1)
    for _ in range(SPLIT_CANDIDATES):
        order = list(pool)
        rng.shuffle(order)
        test, validation = order[:n_test], order[n_test : n_test + n_validation]
        groups = (train or order[n_test + n_validation :], validation, test)
        covered = [len(set().union(*(classes_of[speaker] for speaker in group))) for group in groups]
        cover = (sum(covered), covered[0])  # ties go to the split whose training speakers cover more classes
        if cover > best_cover:
            best, best_cover = (validation, test), cover
        if cover[0] == 3 * n_classes:
            break
    return best


def _split_by_file(dataset: Dataset, args: DataArguments, seed: int) -> DatasetDict:
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    labels = np.asarray(strata(dataset))
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
