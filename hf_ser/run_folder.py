"""Files a run writes and reads: `run_config.json` (the recipe's argument groups), the per-split results files, and
the `base_model/` folder of a LoRA run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

RUN_CONFIG_FILE = "run_config.json"
DATA_REPORT_FILE = "data_report.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.json"
TRAINER_STATE_FILE = "trainer_state.json"  # written by the Trainer, last of a checkpoint's files
MODEL_CARD_FILE = "README.md"
CV_SUMMARY_FILE = "cv_summary.json"
BASE_MODEL_DIR = "base_model"  # where hf_ser.training.lora keeps the model a LoRA adapter adapts
# Split -> metric prefix: `eval_results.json` holds `eval_ua`, ..., `test_results.json` holds `test_ua`, ...
SPLIT_PREFIXES = {"validation": "eval", "test": "test"}


def results_file(prefix: str) -> str:
    """`eval_results.json`, `test_results.json`, ...: what `Trainer.save_metrics(prefix)` writes."""
    return f"{prefix}_results.json"


def predictions_file(prefix: str) -> str:
    """The per-clip predictions behind `results_file(prefix)`."""
    return f"{prefix}_predictions.json"


TEST_RESULTS_FILE = results_file(SPLIT_PREFIXES["test"])

# Pickle can run code when loaded: hf-ser writes model weights as safetensors only, and refuses pickled weights it
# finds (training checks, publishing). The Trainer's own bookkeeping pickles (arguments, optimizer, RNG) are not weights.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TRAINER_PICKLES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")


def is_pickled_weights(path: Path) -> bool:
    """A pickle-based file that is not one of the Trainer's bookkeeping files (`rng_state_<rank>.pth` included)."""
    name = Path(path).name
    return (
        Path(path).suffix in PICKLE_SUFFIXES
        and name not in TRAINER_PICKLES
        and not (name.startswith("rng_state_") and name.endswith(".pth"))
    )


def read_json(path: Path, missing_ok: bool = False, hint: str = "") -> Optional[Any]:
    """The JSON in `path`; a file that is missing (`None` when `missing_ok`) or unreadable raises a ValueError that
    names it, followed by `hint` (what to do about it)."""
    if missing_ok and not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read it ({error}){hint}") from error


def save_run_config(output_dir: str, model_args, data_args, training_args, model=None) -> Path:
    """All three argument dataclasses as JSON (what `hf-ser compare` reads; `training_args.bin` is a pickle), with
    the model's parameter counts. Every field whose name mentions a token is dropped, so no secret lands on disk."""
    config = {
        "model_args": asdict(model_args),
        "data_args": asdict(data_args),
        "training_args": training_args.to_dict(),
    }
    config = {group: {k: v for k, v in values.items() if "token" not in k} for group, values in config.items()}
    if model is not None:
        config["parameters"] = {
            "total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
    path = Path(output_dir) / RUN_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, default=str))
    return path
