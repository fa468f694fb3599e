"""Loading what a run saved, for inference: a plain checkpoint, or a LoRA run (base model + adapter), and folding a
LoRA adapter into a plain checkpoint. Architectures load through the Auto classes hf_ser registers: no remote code."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Union

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from hf_ser.run_folder import BASE_MODEL_DIR

logger = logging.getLogger(__name__)


MODEL_FOLDER_FILES = ("config.json", "adapter_config.json")  # a full model's, a LoRA run's


def check_model_reference(name_or_path: Union[str, os.PathLike], what: str = "model") -> None:
    """Refuse in one line a MODEL that is neither a local model folder nor shaped like a Hub id (`name`,
    `user/name`), before transformers answers `Repo id must be in the form ...`."""
    path = Path(name_or_path)
    if path.is_dir():
        if not any((path / name).is_file() for name in MODEL_FOLDER_FILES):
            raise FileNotFoundError(
                f"{path} is not a {what} folder: it has no {' or '.join(MODEL_FOLDER_FILES)} (give the output_dir of "
                "`hf-ser train`, or a folder written by save_pretrained)"
            )
        return
    if path.exists():
        raise NotADirectoryError(f"{path} is a file: give a {what} folder or a Hub id")
    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        raise FileNotFoundError(
            f"no {what} folder or Hub id {str(name_or_path)!r}: there is no folder {str(path.absolute())!r}, and a Hub "
            "id has the form `name` or `user/name`"
        ) from None


def _from_model_reference(load, name_or_path: Union[str, os.PathLike], **kwargs):
    """`load(name_or_path, **kwargs)`, where a Hub id that cannot be found (or reached) is one line naming it."""
    check_model_reference(name_or_path)
    try:
        return load(name_or_path, **kwargs)
    except OSError as error:
        if Path(name_or_path).exists():
            raise
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
        raise FileNotFoundError(
            f"no model folder or Hub id {str(name_or_path)!r}: no such local folder, and no such model on the Hub or "
            f"in its cache{offline}"
        ) from error


def load_model(name_or_path: Union[str, os.PathLike], feature_extractor=None):
    """A saved hf-ser model (checkpoint folder, Hub id, or LoRA run folder) in evaluation mode, and its feature
    extractor (`feature_extractor` when given, else the one saved with the model). Architectures load through the
    Auto classes hf_ser registers: no remote code runs. A MODEL that is no folder and no Hub model is a
    FileNotFoundError naming it."""
    if (Path(name_or_path) / "adapter_config.json").is_file():
        model = load_lora(name_or_path)
    else:
        # hf-ser writes safetensors only; refusing pickles means a tampered checkpoint cannot run code on load.
        load = AutoModelForAudioClassification.from_pretrained
        model = _from_model_reference(load, name_or_path, use_safetensors=True).eval()
    return model, feature_extractor or AutoFeatureExtractor.from_pretrained(name_or_path)


def load_lora(run_dir: str | Path):
    """The trained LoRA model of a run directory: its base model (`base_model/` if present, else the adapter's
    `base_model_name_or_path`) with the adapter loaded on top, in evaluation mode."""
    from peft import PeftConfig, PeftModel  # imported only for LoRA runs

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no LoRA run folder {str(run_dir)!r}")
    if not (run_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no adapter_config.json: not a LoRA run directory")
    base = run_dir / BASE_MODEL_DIR
    base = (
        str(base)
        if (base / "config.json").is_file()
        else PeftConfig.from_pretrained(str(run_dir)).base_model_name_or_path
    )
    if not base:
        raise FileNotFoundError(
            f"{run_dir}: no {BASE_MODEL_DIR}/ and no base_model_name_or_path in adapter_config.json"
        )
    model = PeftModel.from_pretrained(
        AutoModelForAudioClassification.from_pretrained(base, use_safetensors=True), str(run_dir)
    )
    return model.eval()


def merge_lora(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Fold a LoRA run's adapter into its base weights and save a plain hf-ser checkpoint (with the feature
    extractor) that loads with `AutoModelForAudioClassification` and `pipeline("audio-classification")`."""
    merged = load_lora(run_dir).merge_and_unload()
    out_dir = Path(out_dir)
    merged.save_pretrained(out_dir)
    AutoFeatureExtractor.from_pretrained(str(run_dir)).save_pretrained(out_dir)
    logger.info("Merged %s into %s", run_dir, out_dir)
    return out_dir
