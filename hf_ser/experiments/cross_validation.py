"""Speaker-independent cross-validation: one `hf_ser.train.main` run per fold, then a summary over the folds.

    hf-ser cv RECIPE.yaml [--folds leave-one-speaker-out | leave-one-session-out | K] [--key value ...]
    hf-ser cv RECIPE.yaml --folds K --plan_only; hf-ser cv RECIPE.yaml --fold I; hf-ser cv RECIPE.yaml --summarize

Every fold tests on speakers that neither its training nor its validation split contains. Validation speakers come
from the fold's training speakers, and the best checkpoint is chosen on them; the test speakers are scored once, after
training. Fold results land in `<output_dir>/fold-XX/`; the summary in `<output_dir>/cv_summary.json` / `.md` and
`cv_confusion_matrix.png`. A finished fold (its `test_results.json` and model card exist) is not trained again, so an
interrupted run resumes where it stopped (and a fold interrupted mid-training resumes from its last checkpoint).
The same plan (`cv_plan.json`) serves folds run as separate jobs: `--plan_only` writes it, `--fold I` trains one fold
of it (refusing a plan made with another recipe, corpus or options), `--summarize` summarises the finished folds.

`--refit` adds a second run per fold, `<output_dir>/fold-XX-refit/`: trained on the fold's training and validation
speakers together, for the number of epochs its validation run chose (the best checkpoint's epoch, rounded up), with no
validation split; its last weights are tested. The summary then reports the refit models (what `hf-ser compare`
reads) and, beside them, the validation runs' own test scores. A plan without it gains it when `--refit` is passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from hf_ser.arguments import DataArguments, ModelArguments, SERTrainingArguments, parse_args, refuse_dimensional
from hf_ser.data.dataset import CheckedCorpus, CorpusReport, check_corpus, select_labels
from hf_ser.data.sources import corpus_records
from hf_ser.evaluation.metrics import mean_std, percent, ser_scores
from hf_ser.evaluation.plots import save_confusion_matrix
from hf_ser.run_folder import (
    CONFUSION_MATRIX_FILE,
    CV_SUMMARY_FILE,
    TEST_RESULTS_FILE,
    TRAINER_STATE_FILE,
    read_json,
)
from hf_ser.train import train
from hf_ser.training.checkpoints import is_finished_run

logger = logging.getLogger(__name__)

LOSO = "leave-one-speaker-out"
LOSESSO = "leave-one-session-out"
FOLD_RULES = (LOSO, LOSESSO, "K (an integer: K speaker-disjoint folds balanced by item count)")
SPLIT_KEYS = ("train_speakers", "validation_speakers", "test_speakers")
PLAN_FILE = "cv_plan.json"
REFIT_SUFFIX = "-refit"
SUMMARY_FILE = CV_SUMMARY_FILE
FOLD_TIME_FILE = "cv_fold.json"
METRICS = ("wa", "ua", "macro_f1")
STD_RULE = "sample standard deviation over folds (ddof=1)"

# IEMOCAP speakers are `Ses01F`, `Ses01M`, ...: the two actors of one recorded session share its number.
SESSION_PATTERN = re.compile(r"^(?P<session>Ses\d+)[FM]$")


def speaker_session(speaker: str) -> Optional[str]:
    """The recording session a speaker belongs to (`Ses01F` -> `Ses01`), or None for corpora without sessions."""
    match = SESSION_PATTERN.match(speaker)
    return match["session"] if match else None


def describe_folds(folds: str) -> str:
    return folds if folds in (LOSO, LOSESSO) else f"{folds}-fold speaker-disjoint"


@dataclass
class Fold:
    index: int
    test_speakers: list[str]
    validation_speakers: list[str]
    train_speakers: list[str]

    @property
    def name(self) -> str:
        return f"fold-{self.index:02d}"

    @property
    def refit_name(self) -> str:
        return f"{self.name}{REFIT_SUFFIX}"


def fold_test_speakers(speaker_items: dict[str, int], folds: str, seed: int = 42) -> list[list[str]]:
    """The test speakers of each fold: one speaker, one session, or K groups of nearly equal item count."""
    speakers = sorted(speaker_items)
    if folds == LOSO:
        return [[speaker] for speaker in speakers]
    if folds == LOSESSO:
        sessions = {speaker: speaker_session(speaker) for speaker in speakers}
        missing = [speaker for speaker, session in sessions.items() if session is None]
        if missing:
            raise ValueError(
                f"--folds {LOSESSO}: speaker(s) {missing[:5]} have no session (session speakers look like "
                f"{SESSION_PATTERN.pattern!r}, e.g. IEMOCAP's Ses01F); use {LOSO} or a number of folds instead"
            )
        grouped: dict[str, list[str]] = {}
        for speaker in speakers:
            grouped.setdefault(sessions[speaker], []).append(speaker)
        return [grouped[session] for session in sorted(grouped)]
    try:
        k = int(folds)
    except ValueError:
        raise ValueError(f"--folds {folds!r}: use one of {FOLD_RULES}") from None
    if not 2 <= k <= len(speakers):
        raise ValueError(f"--folds {k}: the corpus has {len(speakers)} speakers, so use 2 to {len(speakers)} folds")
    # Greedy balancing: largest speakers first, each into the fold with the fewest items so far. The seeded shuffle
    # decides among speakers of equal size, so the folds are reproducible for one seed and vary across seeds.
    order = list(speakers)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda speaker: -speaker_items[speaker])
    groups: list[list[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for speaker in order:
        target = min(range(k), key=lambda i: (totals[i], len(groups[i]), i))
        groups[target].append(speaker)
        totals[target] += speaker_items[speaker]
    return [sorted(group) for group in groups]


def make_folds(
    speaker_items: dict[str, int], folds: str = LOSO, seed: int = 42, validation_fraction: float = 0.15
) -> list[Fold]:
    """Speaker-disjoint folds. Each fold validates on `max(1, round(validation_fraction * training speakers))` of its
    non-test speakers, taken from the folds that follow it in a seeded cycle and preferring speakers that have served
    least, so validation duty rotates (under leave-one-speaker-out every speaker validates exactly once)."""
    groups = fold_test_speakers(speaker_items, folds, seed)
    cycle = list(range(len(groups)))
    random.Random(seed + 1).shuffle(cycle)
    served: Counter = Counter()
    validation_of: dict[int, list[str]] = {}
    for position, fold_index in enumerate(cycle):
        following = [groups[cycle[(position + step) % len(cycle)]] for step in range(1, len(cycle))]
        # within a group, start at a different speaker for each position (e.g. alternate F and M of a session)
        candidates = [group[(j + position) % len(group)] for group in following for j in range(len(group))]
        if len(candidates) < 2:
            raise ValueError(
                f"fold {fold_index} tests on {groups[fold_index]} and leaves {candidates} for training and "
                "validation: cross-validation needs at least two other speakers"
            )
        count = min(max(1, round(validation_fraction * len(candidates))), len(candidates) - 1)
        ranked = sorted(range(len(candidates)), key=lambda i: (served[candidates[i]], i))
        validation_of[fold_index] = sorted(candidates[i] for i in ranked[:count])
        served.update(validation_of[fold_index])
    result = []
    for index, test in enumerate(groups):
        held_out = set(test) | set(validation_of[index])
        train = [speaker for speaker in sorted(speaker_items) if speaker not in held_out]
        result.append(Fold(index, list(test), validation_of[index], train))
    return result


def corpus_speaker_items(data_args: DataArguments) -> dict[str, int]:
    """Items per speaker of the recipe's corpus (after label selection), read from its records without decoding
    audio."""
    if data_args.speaker_dependent:
        raise ValueError("speaker_dependent: true contradicts speaker-independent cross-validation; remove it")
    records, _ = select_labels(corpus_records(data_args), data_args, CorpusReport(dataset=data_args.dataset))
    without = [record["path"] for record in records if record.get("speaker") is None]
    if without:
        raise ValueError(
            f"dataset {data_args.dataset!r}: {len(without)} item(s) have no speaker (e.g. {without[0]}); "
            "cross-validation needs speakers (audiofolder: set speaker_pattern; csv/jsonl: a speaker column)"
        )
    return dict(Counter(record["speaker"] for record in records))


def _read_fold_file(path: Path, missing_ok: bool = False) -> Optional[dict]:
    """A JSON file of the CV folder (None when missing and `missing_ok`); an unreadable one says how to recover."""
    return read_json(path, missing_ok=missing_ok, hint="; delete the fold folder to train that fold again")


def _check_plan(cv_dir: Path, plan: dict, write: bool = True) -> None:
    """Refuse a CV folder whose plan was made with another recipe, corpus, folds or options (results would mix);
    with `write`, then write `plan` there."""
    path = cv_dir / PLAN_FILE
    if path.is_file():
        previous = _read_fold_file(path)
        for key, what in (("recipe", "recipe"), ("corpus", "corpus")):
            if key in previous and key in plan and previous[key] != plan[key]:
                raise ValueError(
                    f"{path} was planned with a different {what} ({previous[key]}, now {plan[key]}); run with the "
                    "plan's recipe and corpus, or plan again into another --output_dir"
                )
        if previous["folds"] != plan["folds"]:
            raise ValueError(
                f"{cv_dir} holds a cross-validation with other folds ({path}); use another --output_dir or delete it"
            )
        if previous["argv"] != plan["argv"]:
            raise ValueError(
                f"{cv_dir} holds a cross-validation run with other options {previous['argv']} ({path}); resume with "
                "the same options, or use another --output_dir"
            )
    if write:
        cv_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan, indent=2))


def _recipe_fingerprint(argv: list[str]) -> Optional[dict]:
    """The recipe file of `argv` and a hash of its text, so a fold job notices an edited recipe."""
    if not (argv and argv[0].endswith((".yaml", ".yml"))):
        return None
    return {"path": argv[0], "sha256": hashlib.sha256(Path(argv[0]).read_bytes()).hexdigest()[:16]}


@dataclass
class CrossValidation:
    """A planned cross-validation: the recipe's arguments, its folds and the plan that `cv_plan.json` records."""

    model_args: ModelArguments
    data_args: DataArguments
    training_args: SERTrainingArguments
    folds: list[Fold]
    plan: dict

    @property
    def cv_dir(self) -> Path:
        return Path(self.training_args.output_dir)


def plan_cross_validation(argv: list[str], folds: Optional[str] = None, refit: bool = False) -> CrossValidation:
    """The folds of `argv` (what `hf-ser train` takes; its `output_dir` is the CV folder). `folds=None` takes the rule
    of the plan already in that folder, or leave-one-speaker-out; `refit` (or a plan in that folder that has it) adds
    each fold's refit on its training + validation speakers."""
    argv = list(argv)
    overridden = [key for key in SPLIT_KEYS if f"--{key}" in argv]
    if overridden:
        raise ValueError(f"{overridden}: cross-validation chooses the speakers of every fold; drop these options")
    model_args, data_args, training_args = parse_args(argv)
    refuse_dimensional(data_args, "cv")
    cv_dir = Path(training_args.output_dir)
    stored = _read_fold_file(cv_dir / PLAN_FILE, missing_ok=True) or {}
    if folds is None:
        folds = stored.get("folds_rule", LOSO)
    speaker_items = corpus_speaker_items(data_args)
    fold_list = make_folds(speaker_items, folds, training_args.seed, data_args.validation_fraction)
    plan = {
        "folds_rule": folds,
        "seed": training_args.seed,
        "argv": argv,
        "recipe": _recipe_fingerprint(argv),
        "corpus": {"dataset": data_args.dataset, "data_dir": data_args.data_dir, "speaker_items": speaker_items},
        "folds": [asdict(fold) for fold in fold_list],
        "refit": bool(refit or stored.get("refit")),
    }
    if plan["refit"] and not (training_args.load_best_model_at_end and training_args.eval_strategy != "no"):
        raise ValueError(
            "--refit takes each fold's epoch count from the best checkpoint of its validation run, and these options "
            "choose none: keep eval_strategy (epoch or steps) and load_best_model_at_end: true"
        )
    return CrossValidation(model_args, data_args, training_args, fold_list, plan)


def fold_data_args(data_args: DataArguments, fold: Fold) -> DataArguments:
    """The recipe's data arguments with the fold's speakers."""
    return dataclasses.replace(
        data_args,
        train_speakers=fold.train_speakers,
        validation_speakers=fold.validation_speakers,
        test_speakers=fold.test_speakers,
    )


def train_fold(cv: CrossValidation, fold: Fold, corpus: Optional[CheckedCorpus] = None) -> bool:
    """Train and test one fold into `<cv_dir>/fold-XX` unless it finished already; True when it trained."""
    fold_dir = cv.cv_dir / fold.name
    # The model card is the last file a run writes (then cv_fold.json, its wall time): a fold killed before reruns.
    if is_finished_run(fold_dir):
        logger.info("%s: done already (%s), not trained again", fold.name, fold_dir / TEST_RESULTS_FILE)
        return False
    logger.info(
        "%s: test %s, validation %s, %d training speakers",
        fold.name,
        fold.test_speakers,
        fold.validation_speakers,
        len(fold.train_speakers),
    )
    started = time.perf_counter()
    training_args = dataclasses.replace(cv.training_args, output_dir=str(fold_dir))
    train(cv.model_args, fold_data_args(cv.data_args, fold), training_args, corpus=corpus)
    if training_args.process_index == 0:
        (fold_dir / FOLD_TIME_FILE).write_text(json.dumps({"wall_seconds": time.perf_counter() - started}))
    return True


def best_epoch_of(state: dict) -> Optional[float]:
    """The epoch of the best checkpoint in a `trainer_state.json`, or None when none was chosen."""
    return next(
        (
            entry.get("epoch")
            for entry in state.get("log_history", [])
            if entry.get("step") == state.get("best_global_step")
        ),
        None,
    )


def refit_epochs(fold_dir: Path) -> int:
    """The length of a fold's refit: the epoch of its validation run's best checkpoint, rounded up. Read from its
    trainer state alone, which rank 0 writes before the final predictions (every rank has it when `train` returns)."""
    best_epoch = best_epoch_of(_read_fold_file(fold_dir / TRAINER_STATE_FILE, missing_ok=True) or {})
    if best_epoch is None:
        raise ValueError(
            f"{fold_dir / TRAINER_STATE_FILE} records no best checkpoint, so the refit has no epoch count: the "
            "validation run must select one (eval_strategy and load_best_model_at_end as the recipes set them)"
        )
    return max(1, math.ceil(best_epoch))


def refit_fold(cv: CrossValidation, fold: Fold, corpus: Optional[CheckedCorpus] = None) -> bool:
    """Train `<cv_dir>/fold-XX-refit` on the fold's training + validation speakers for `refit_epochs` of its finished
    validation run, with no validation split, and test its last weights; True when it trained."""
    refit_dir = cv.cv_dir / fold.refit_name
    epochs = refit_epochs(cv.cv_dir / fold.name)
    if is_finished_run(refit_dir):
        made_for = (_read_fold_file(refit_dir / FOLD_TIME_FILE, missing_ok=True) or {}).get("epochs", epochs)
        if made_for != epochs:  # its validation run was trained again since and chose another epoch
            raise ValueError(
                f"{refit_dir} was trained for {made_for} epochs, but {cv.cv_dir / fold.name} now chooses {epochs}: "
                f"delete {refit_dir} to refit that fold again"
            )
        logger.info("%s: done already (%s), not trained again", fold.refit_name, refit_dir / TEST_RESULTS_FILE)
        return False
    speakers = sorted(fold.train_speakers + fold.validation_speakers)
    logger.info(
        "%s: %d epochs on %d speakers (training + validation), test %s",
        fold.refit_name,
        epochs,
        len(speakers),
        fold.test_speakers,
    )
    started = time.perf_counter()
    data_args = dataclasses.replace(fold_data_args(cv.data_args, fold), train_speakers=speakers, validation_speakers=[])
    training_args = dataclasses.replace(
        cv.training_args,
        output_dir=str(refit_dir),
        num_train_epochs=epochs,
        max_steps=-1,
        eval_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=0,
    )
    train(cv.model_args, data_args, training_args, corpus=corpus)
    if training_args.process_index == 0:
        timing = {"wall_seconds": time.perf_counter() - started, "epochs": epochs}
        (refit_dir / FOLD_TIME_FILE).write_text(json.dumps(timing))
    return True


def _fold_is_done(cv: CrossValidation, fold: Fold) -> bool:
    runs = [fold.name, fold.refit_name] if cv.plan["refit"] else [fold.name]
    return all(is_finished_run(cv.cv_dir / name) for name in runs)


def _summarise(cv: CrossValidation, fold_list: list[Fold]) -> dict:
    return summarise(
        cv.cv_dir,
        fold_list,
        cv.plan["folds_rule"],
        cv.training_args.metric_for_best_model,
        cv.plan["argv"],
        refit=cv.plan["refit"],
    )


def run_cross_validation(argv: list[str], folds: Optional[str] = LOSO, refit: bool = False) -> dict:
    """`argv` is what `hf-ser train` takes (`RECIPE.yaml --key value ...`); its `output_dir` becomes the CV folder.
    Trains every fold not yet done (and with `refit`, its refit), one after another, then writes and returns the
    summary."""
    cv = plan_cross_validation(argv, folds, refit)
    _check_plan(cv.cv_dir, cv.plan)
    started = time.perf_counter()
    corpus = None  # decoded once, on the first fold that trains, and split again for every other fold
    for fold in cv.folds:
        if corpus is None and not _fold_is_done(cv, fold):
            with cv.training_args.main_process_first(desc="corpus"):
                corpus = check_corpus(cv.data_args)
        train_fold(cv, fold, corpus)
        if cv.plan["refit"]:
            refit_fold(cv, fold, corpus)
    summary = _summarise(cv, cv.folds)
    summary["wall_seconds_this_invocation"] = time.perf_counter() - started
    write_summary(cv.cv_dir, summary)
    return summary


def _planned(argv: list[str], folds: Optional[str]) -> CrossValidation:
    """The plan of `argv`, which must be the one `--plan_only` wrote into its CV folder (with its refit or not)."""
    cv = plan_cross_validation(argv, folds)
    if not (cv.cv_dir / PLAN_FILE).is_file():
        raise FileNotFoundError(
            f"{cv.cv_dir / PLAN_FILE} does not exist: plan the folds first with `hf-ser cv {' '.join(argv)} --plan_only`"
        )
    _check_plan(cv.cv_dir, cv.plan, write=False)
    return cv


def run_fold(argv: list[str], index: int, folds: Optional[str] = None) -> bool:
    """Fold `index` of the plan in `argv`'s CV folder, as its own job (a SLURM array task, an `accelerate launch`),
    then its refit when the plan has one; True when either trained."""
    cv = _planned(argv, folds)
    if not 0 <= index < len(cv.folds):
        raise ValueError(f"--fold {index}: {cv.cv_dir / PLAN_FILE} has {len(cv.folds)} folds, 0 to {len(cv.folds) - 1}")
    trained = train_fold(cv, cv.folds[index])
    if cv.plan["refit"]:
        trained = refit_fold(cv, cv.folds[index]) or trained
    return trained


def summarise_planned(argv: list[str], folds: Optional[str] = None) -> dict:
    """`cv_summary.json` / `.md` from the folds of the plan that finished; the others are named as missing."""
    cv = _planned(argv, folds)
    finished = [fold for fold in cv.folds if _fold_is_done(cv, fold)]
    missing = [fold.name for fold in cv.folds if fold not in finished]
    if not finished:
        raise FileNotFoundError(f"{cv.cv_dir}: no fold has finished yet (missing {', '.join(missing)})")
    summary = _summarise(cv, finished)
    if missing:
        summary["missing_folds"] = missing
        summary["protocol"]["planned_folds"] = len(cv.folds)
        logger.warning("%d of %d folds finished; missing: %s", len(finished), len(cv.folds), ", ".join(missing))
    write_summary(cv.cv_dir, summary)
    return summary


def _fold_result(fold_dir: Path) -> dict:
    results = _read_fold_file(fold_dir / TEST_RESULTS_FILE)
    state = _read_fold_file(fold_dir / TRAINER_STATE_FILE, missing_ok=True) or {}
    best_epoch = best_epoch_of(state)
    timing = _read_fold_file(fold_dir / FOLD_TIME_FILE, missing_ok=True) or {}
    return {
        **{metric: results[f"test_{metric}"] for metric in METRICS},
        "test_samples": results.get("test_samples"),
        "epochs_run": state.get("epoch"),
        "max_epochs": state.get("num_train_epochs"),
        "best_epoch": best_epoch,
        "best_validation_metric": state.get("best_metric"),
        "wall_seconds": timing.get("wall_seconds"),
    }


def _validation_run(row: dict) -> dict:
    """A refit fold's validation run, as its summary row keeps it beside the refit's scores."""
    return {key: row[key] for key in (*METRICS, "epochs_run", "max_epochs", "best_epoch", "best_validation_metric")}


def summarise(
    cv_dir: Path, fold_list: list[Fold], folds: str, selection_metric: str, argv: list[str], refit: bool = False
) -> dict:
    """Per-fold and mean ± std test scores, the confusion matrix summed over folds (every item is tested once). With
    `refit`, the scores are the refit models' and each row keeps its validation run's as `validation_run`."""
    rows, total, labels = [], None, None
    for fold in fold_list:
        fold_dir = cv_dir / (fold.refit_name if refit else fold.name)
        matrix_file = _read_fold_file(fold_dir / CONFUSION_MATRIX_FILE)
        if labels is not None and matrix_file["labels"] != labels:
            raise ValueError(f"{fold_dir}: labels {matrix_file['labels']} differ from the other folds' {labels}")
        labels = matrix_file["labels"]
        matrix = np.asarray(matrix_file["test"], dtype=int)
        total = matrix if total is None else total + matrix
        row = {
            "fold": fold.name,
            "run": fold_dir.name,  # the folder of the scored model
            "test_speakers": fold.test_speakers,
            "validation_speakers": fold.validation_speakers,
            **_fold_result(fold_dir),
        }
        if refit:
            validation_run = _fold_result(cv_dir / fold.name)
            row["validation_run"] = _validation_run(validation_run)
            walls = (row["wall_seconds"], validation_run["wall_seconds"])
            row["wall_seconds"] = None if None in walls else sum(walls)  # both runs of the fold
        rows.append(row)
    mean, std = {}, {}
    for metric in METRICS:
        mean[metric], std[metric] = mean_std([row[metric] for row in rows])  # folds >= 2: std defined
    predictions = np.repeat(np.tile(np.arange(len(labels)), len(labels)), total.ravel())
    references = np.repeat(np.repeat(np.arange(len(labels)), len(labels)), total.ravel())
    pooled = ser_scores(predictions, references, num_labels=len(labels))
    walls = [row["wall_seconds"] for row in rows]
    selection = (
        f"best checkpoint on validation {selection_metric}; test speakers are scored once, after training"
        if not refit
        else f"each fold's validation run chose an epoch count (its best checkpoint on validation {selection_metric}); "
        "the scored model was then trained on the fold's training + validation speakers for that many epochs "
        "(rounded up), with no validation split, and its last weights scored once on the test speakers"
    )
    extra = {}
    if refit:
        runs = {metric: mean_std([row["validation_run"][metric] for row in rows]) for metric in METRICS}
        extra["validation_runs"] = {
            "what": "the validation runs' own test scores (their best checkpoint, trained without the validation "
            "speakers), for comparison",
            "mean": {metric: mean for metric, (mean, _) in runs.items()},
            "std": {metric: std for metric, (_, std) in runs.items()},
        }
    return {
        "protocol": {
            "evaluation": "speaker-independent cross-validation: no test speaker is in its fold's training or "
            "validation split",
            "folds": folds,
            "n_folds": len(fold_list),
            "validation_speakers": "chosen from each fold's training speakers (max(1, round(validation_fraction x "
            "non-test speakers))), rotating over speakers by a seeded cycle; never a test speaker",
            "model_selection": selection,
            "std": STD_RULE,
        },
        "command": ["hf-ser", "cv", *argv, "--folds", folds, *(["--refit"] if refit else [])],
        "labels": labels,
        "folds": rows,
        "mean": mean,
        "std": std,
        "pooled": {metric: pooled[metric] for metric in METRICS},
        "confusion_matrix": total.tolist(),
        "wall_seconds": sum(walls) if None not in walls else None,
        **extra,
    }


def write_summary(cv_dir: Path, summary: dict) -> None:
    """`cv_summary.json`, `cv_summary.md` and `cv_confusion_matrix.png`."""
    (cv_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    mean, std, protocol = summary["mean"], summary["std"], summary["protocol"]
    title = f"{describe_folds(protocol['folds'])} CV: UA {percent(mean['ua'], std['ua'])}"
    save_confusion_matrix(summary["confusion_matrix"], summary["labels"], cv_dir / "cv_confusion_matrix.png", title)
    wall = summary["wall_seconds"]
    lines = [
        f"# Cross-validation: {describe_folds(protocol['folds'])} ({protocol['n_folds']} folds)",
        "",
        f"`{' '.join(summary['command'])}`",
        "",
        *(
            [
                f"**Incomplete: {protocol['n_folds']} of {protocol['planned_folds']} folds finished; missing "
                f"{', '.join(summary['missing_folds'])}** (train each with `hf-ser cv ... --fold I`, then summarise "
                "again).",
                "",
            ]
            if summary.get("missing_folds")
            else []
        ),
        f"**UA {percent(mean['ua'], std['ua'])}, WA {percent(mean['wa'], std['wa'])}, "
        f"macro-F1 {percent(mean['macro_f1'], std['macro_f1'])}** (mean ± {protocol['std']}"
        + ("; refit models" if "validation_runs" in summary else "")
        + ").",
        "",
    ]
    if "validation_runs" in summary:
        runs = summary["validation_runs"]
        lines += [
            f"Their validation runs (trained without the validation speakers, best checkpoint) scored UA "
            f"{percent(runs['mean']['ua'], runs['std']['ua'])}, WA {percent(runs['mean']['wa'], runs['std']['wa'])}, "
            f"macro-F1 {percent(runs['mean']['macro_f1'], runs['std']['macro_f1'])} on the same test speakers.",
            "",
            "| fold | test speakers | validation speakers | WA % | UA % | macro-F1 % | refit epochs "
            "| validation run: UA % | best epoch / run / max | wall s (both runs) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        lines += [
            "| fold | test speakers | validation speakers | WA % | UA % | macro-F1 % | epochs run / max | best epoch "
            "| wall s |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
    for row in summary["folds"]:
        wall_text = f"{row['wall_seconds']:.0f}" if row["wall_seconds"] is not None else "?"
        scores = (
            f"| {row['fold']} | {' '.join(row['test_speakers'])} | {' '.join(row['validation_speakers'])} "
            f"| {100 * row['wa']:.2f} | {100 * row['ua']:.2f} | {100 * row['macro_f1']:.2f} "
        )
        if "validation_run" in row:
            run = row["validation_run"]
            lines.append(
                f"{scores}| {row['epochs_run']:g} | {100 * run['ua']:.2f} "
                f"| {run['best_epoch']:g} / {run['epochs_run']:g} / {run['max_epochs']} | {wall_text} |"
            )
            continue
        best_epoch = "?" if row["best_epoch"] is None else f"{row['best_epoch']:g}"
        lines.append(f"{scores}| {row['epochs_run']:g} / {row['max_epochs']} | {best_epoch} | {wall_text} |")
    pooled = summary["pooled"]
    lines += [
        "",
        f"Pooled over all test items (summed confusion matrix): WA {100 * pooled['wa']:.2f} %, "
        f"UA {100 * pooled['ua']:.2f} %.",
        "",
        "## Protocol",
        "",
        *[f"- {key.replace('_', ' ')}: {value}" for key, value in protocol.items()],
        f"- wall time: {wall:.0f} s summed over folds"
        if wall is not None
        else "- wall time: not recorded for every fold",
        "",
        "## Summed confusion matrix (rows: true, columns: predicted)",
        "",
        "| | " + " | ".join(summary["labels"]) + " |",
        "|---|" + "---:|" * len(summary["labels"]),
        *[
            f"| {label} | " + " | ".join(map(str, row)) + " |"
            for label, row in zip(summary["labels"], summary["confusion_matrix"])
        ],
        "",
        "![confusion matrix](cv_confusion_matrix.png)",
        "",
    ]
    (cv_dir / "cv_summary.md").write_text("\n".join(lines))


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="hf-ser cv",
        usage="hf-ser cv RECIPE.yaml [--folds FOLDS] [--refit] [--plan_only | --fold I | --summarize] [--key value ...]",
        allow_abbrev=False,
        description="Speaker-independent cross-validation of a recipe: all folds one after another, or each fold as "
        "its own job (--plan_only, then --fold I per job, then --summarize). Every other option is a recipe override "
        "(`--output_dir` is the CV folder).",
    )
    parser.add_argument(
        "--folds",
        default=None,
        help=f"{LOSO} (default), {LOSESSO}, or a number K of folds; omitted: the rule of the plan in the CV folder",
    )
    job = parser.add_mutually_exclusive_group()
    job.add_argument("--plan_only", action="store_true", help=f"write {PLAN_FILE} into the CV folder and exit")
    job.add_argument("--fold", type=int, metavar="I", help=f"train fold I (from 0) of the {PLAN_FILE} in the CV folder")
    job.add_argument(
        "--summarize", action="store_true", help="summarise the finished folds of the plan and name the missing ones"
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="also train each fold on its training + validation speakers for the epochs its validation run chose, "
        "and report those models (a property of the plan: pass it to --plan_only or to a whole run; an existing plan "
        "gains it, and its finished validation runs are kept)",
    )
    # Everything else (the recipe path first, then overrides) passes through unchanged, in order.
    args, train_argv = parser.parse_known_args(argv)
    if args.refit and (args.fold is not None or args.summarize):
        parser.error("--refit belongs to the plan: pass it with --plan_only (the fold jobs then follow the plan)")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.plan_only:
        cv = plan_cross_validation(train_argv, args.folds, args.refit)
        _check_plan(cv.cv_dir, cv.plan)
        print(
            f"{len(cv.folds)} folds planned in {cv.cv_dir / PLAN_FILE}: train each with --fold 0 to {len(cv.folds) - 1}"
        )
        return cv.plan
    if args.fold is not None:
        trained = run_fold(train_argv, args.fold, args.folds)
        print(f"fold {args.fold}: {'trained' if trained else 'finished already'}")
        return {"fold": args.fold, "trained": trained}
    if args.summarize:
        summary = summarise_planned(train_argv, args.folds)
    else:
        summary = run_cross_validation(train_argv, args.folds, args.refit)
    print(
        f"UA {percent(summary['mean']['ua'], summary['std']['ua'])}, "
        f"WA {percent(summary['mean']['wa'], summary['std']['wa'])} over {len(summary['folds'])} folds"
        + (f"; missing: {', '.join(summary['missing_folds'])}" if summary.get("missing_folds") else "")
    )
    return summary
