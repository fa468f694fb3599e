"""Guards that keep a run honest and recoverable: resume only from complete checkpoints, and never let the test split
select or stop a model."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_ser.run_folder import MODEL_CARD_FILE, TEST_RESULTS_FILE, TRAINER_STATE_FILE, is_pickled_weights

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# `Trainer._save_checkpoint` writes the weights first and the trainer state last, so a parseable state marks a complete
# checkpoint. DeepSpeed and FSDP keep their sharded weights in folders of these names instead.
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
SHARDED_WEIGHTS_PREFIXES = ("global_step", "pytorch_model_fsdp")
STATE_FILE = TRAINER_STATE_FILE


def is_complete_checkpoint(folder: str | Path, processes: int = 1) -> bool:
    """A checkpoint folder with weights and a readable trainer state (the last file the Trainer writes).

    A checkpoint written by several processes holds one RNG state per rank (`rng_state_R.pth`); resumed by `processes`
    > 1 ranks, all of theirs must be there. Each rank writes its own with no barrier before rank 0 writes the trainer
    state, so a slower rank can still be writing when the state appears (the Trainer would then resume that rank with
    fresh random state, and the run would no longer match an uninterrupted one).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    per_rank = any(folder.glob("rng_state_*.pth"))
    if per_rank and processes > 1 and not all((folder / f"rng_state_{r}.pth").is_file() for r in range(processes)):
        return False
    has_weights = any((folder / name).is_file() for name in WEIGHTS_FILES) or any(
        entry.name.startswith(SHARDED_WEIGHTS_PREFIXES) for entry in folder.iterdir()
    )
    if not has_weights:
        return False
    try:
        json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | Path, processes: int = 1) -> Optional[str]:
    """The highest-step `checkpoint-N` in `output_dir` that was written completely (by all `processes` ranks).

    `Trainer._save_checkpoint` writes straight into `checkpoint-N` (no temporary folder and rename), so a run killed
    mid-save leaves a partial folder; `transformers.trainer_utils.get_last_checkpoint` would pick it and fail to
    resume. Partial folders are skipped with a warning.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(
        ((int(m[1]), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True
    )
    for _, folder in steps:
        if is_complete_checkpoint(folder, processes):
            return str(folder)
        logger.warning("Ignoring %s: an incomplete checkpoint (interrupted while saving)", folder)
    return None


# `hf_ser.train.main` writes the test results and then the model card, last of all: both present mark a finished run.
FINISHED_RUN_FILES = (TEST_RESULTS_FILE, MODEL_CARD_FILE)


def is_finished_run(output_dir: str | Path) -> bool:
    """`output_dir` holds a run that trained, scored its test split and wrote its model card."""
    return all((Path(output_dir) / name).is_file() for name in FINISHED_RUN_FILES)


def refuse_finished_run(training_args) -> None:
    """Stop before any work when `output_dir` already holds a finished run.

    Resuming a finished run is not a no-op: the Trainer would restart from the last checkpoint left on disk (often
    the best one, epochs before the end), train again and overwrite the results. Asking is the safe default, as
    `TrainingArguments.overwrite_output_dir` used to be.
    """
    if training_args.overwrite_output_dir or training_args.resume_from_checkpoint is not None:
        return
    if is_finished_run(training_args.output_dir):
        raise FileExistsError(
            f"{training_args.output_dir} holds a finished run (its {' and '.join(FINISHED_RUN_FILES)} exist): choose "
            "another --output_dir, or pass --overwrite_output_dir true to train it again from scratch"
        )


def checkpoint_to_resume(training_args) -> Optional[str]:
    """`resume_from_checkpoint` when the recipe names one; else the last complete checkpoint in `output_dir`, unless
    `overwrite_output_dir` asks for a fresh start."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and Path(training_args.output_dir).is_dir() and not training_args.overwrite_output_dir:
        # Per-rank RNG files exist unless only the model is saved; those are what the resuming ranks will load.
        ranks = 1 if training_args.save_only_model else training_args.world_size
        checkpoint = last_complete_checkpoint(training_args.output_dir, ranks)
        if checkpoint:
            logger.info("Resuming from %s", checkpoint)
    return checkpoint


def weights_files(output_dir: str | Path) -> list[Path]:
    """Every pickle-based weights file under `output_dir` (`hf_ser.run_folder.is_pickled_weights`). hf-ser writes
    model weights as safetensors only; a non-empty answer means something else wrote pickles."""
    return sorted(p for p in Path(output_dir).rglob("*") if p.is_file() and is_pickled_weights(p))


class ValidationOnlyCallback(TrainerCallback):
    """Refuses, during training, any evaluation whose metrics or data are the test split's: checkpoint selection and
    early stopping must see validation speakers only. The test split is predicted once, after training."""

    def __init__(self, test_split=None):
        self.test_fingerprint = getattr(test_split, "_fingerprint", None)

    def on_evaluate(self, args, state, control, metrics=None, eval_dataloader=None, **kwargs):
        test_keys = sorted(key for key in (metrics or {}) if key.startswith("test_"))
        dataset = getattr(eval_dataloader, "dataset", None)
        if test_keys or (self.test_fingerprint and getattr(dataset, "_fingerprint", None) == self.test_fingerprint):
            raise RuntimeError(
                f"the Trainer evaluated the test split during training (step {state.global_step}, metrics "
                f"{test_keys or list(metrics or {})}): only the validation split may select checkpoints or stop "
                "training; pass eval_dataset=splits['validation']"
            )


def refuse_selection_without_validation(training_args, splits) -> None:
    """A run without a validation split (`validation_speakers: []`, as `hf-ser cv --refit` trains) has nothing to
    evaluate during training, select a checkpoint on or stop early by: refuse arguments that ask for one."""
    if "validation" in splits:
        return
    asked = [
        f"{key}: {value}"
        for key, value, asks in (
            (
                "eval_strategy",
                getattr(training_args.eval_strategy, "value", training_args.eval_strategy),
                training_args.eval_strategy != "no",
            ),
            ("load_best_model_at_end", True, training_args.load_best_model_at_end),
            (
                "early_stopping_patience",
                training_args.early_stopping_patience,
                bool(training_args.early_stopping_patience),
            ),
        )
        if asks
    ]
    if asked:
        raise ValueError(
            f"validation_speakers is empty, so there is no validation split, but {', '.join(asked)} needs one: set "
            "eval_strategy: no, load_best_model_at_end: false and early_stopping_patience: 0 for a fixed-length run"
        )


def check_selection_uses_validation(trainer, splits) -> None:
    """Before training: the Trainer's eval set must be the validation split, never the test split."""
    eval_dataset = trainer.eval_dataset
    if "validation" not in splits and eval_dataset is None:
        return  # a fixed-length run (refuse_selection_without_validation checked its arguments)
    if isinstance(eval_dataset, dict) or eval_dataset is not splits.get("validation"):
        raise ValueError(
            "the Trainer's eval_dataset must be splits['validation']: checkpoint selection "
            f"(metric_for_best_model={trainer.args.metric_for_best_model!r}) and early stopping read it"
        )
