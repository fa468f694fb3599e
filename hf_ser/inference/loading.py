"""Loading what a run saved, for inference: a plain checkpoint, or a LoRA run (base model + adapter), and folding a
LoRA adapter into a plain checkpoint. Architectures load through the Auto classes hf_ser registers: no remote code."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Union

from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from hf_ser.run_folder import BASE_MODEL_DIR

logger = logging.getLogger(__name__)


def load_model(name_or_path: Union[str, os.PathLike], feature_extractor=None):
    """A saved hf-ser model (checkpoint folder, Hub id, or LoRA run folder) in evaluation mode, and its feature
    extractor (`feature_extractor` when given, else the one saved with the model). Architectures load through the
    Auto classes hf_ser registers: no remote code runs."""
    if (Path(name_or_path) / "adapter_config.json").is_file():
        model = load_lora(name_or_path)
    else:
        # hf-ser writes safetensors only; refusing pickles means a tampered checkpoint cannot run code on load.
        model = AutoModelForAudioClassification.from_pretrained(name_or_path, use_safetensors=True).eval()
    return model, feature_extractor or AutoFeatureExtractor.from_pretrained(name_or_path)


def load_lora(run_dir: str | Path):
    """The trained LoRA model of a run directory: its base model (`base_model/` if present, else the adapter's
    `base_model_name_or_path`) with the adapter loaded on top, in evaluation mode."""
    from peft import PeftConfig, PeftModel  # imported only for LoRA runs

    run_dir = Path(run_dir)
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
