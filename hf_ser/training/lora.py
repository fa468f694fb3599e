"""LoRA fine-tuning through PEFT: the recipe's `peft:` section, adapter-only checkpoints, and a merge for export.

A LoRA run directory holds `adapter_config.json` + `adapter_model.safetensors` (LoRA weights of the encoder and the
fully trained head and pooling, PEFT's `modules_to_save`), the feature extractor, and — unless the run started from a
saved hf-ser checkpoint (`model_name_or_path`) — `base_model/`: the hf-ser model as it was before training (pretrained
or random encoder, initial head), which the adapter needs. `load_lora` rebuilds the trained model from these;
`merge_lora` folds the adapter into the weights and writes a plain checkpoint for `AutoModelForAudioClassification`
and `pipeline("audio-classification")`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from hf_ser.run_folder import BASE_MODEL_DIR

logger = logging.getLogger(__name__)

ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
# Linear layer names per encoder family (transformers' module names).
FEED_FORWARD = {
    "wav2vec2": ("intermediate_dense", "output_dense"),
    "hubert": ("intermediate_dense", "output_dense"),
    "wavlm": ("intermediate_dense", "output_dense"),
    "data2vec-audio": ("intermediate_dense", "output_dense"),
    "whisper": ("fc1", "fc2"),
}
TARGET_PRESETS = ("attention", "attention+ffn", "auto")


def lora_target_modules(backbone_model_type: str, preset: str = "attention") -> str:
    """A PEFT `target_modules` regex over the encoder's Linear layers: attention projections, plus the feed-forward
    layers for `attention+ffn`. The head and pooling are not targeted (they train fully)."""
    if preset not in TARGET_PRESETS:
        raise ValueError(f"peft target_modules {preset!r}: use one of {TARGET_PRESETS} or a list of module names")
    if backbone_model_type not in FEED_FORWARD:
        raise ValueError(
            f"peft target_modules {preset!r}: no preset for encoder type {backbone_model_type!r} (presets: "
            f"{sorted(FEED_FORWARD)}); give target_modules as a list of Linear layer names"
        )
    names = ATTENTION + (FEED_FORWARD[backbone_model_type] if preset == "attention+ffn" else ())
    return rf"^encoder\..*\.({'|'.join(names)})$"


def apply_lora(model: PreTrainedModel, spec: dict, base_model_name_or_path: Optional[str] = None) -> PeftModel:
    """Wrap an hf-ser model in LoRA adapters as the recipe's `peft:` section says (keys of `peft.LoraConfig`).

    `target_modules` may be a preset (`attention`, `auto` = `attention`, `attention+ffn`), a list of names or a regex.
    The head and, when present, the attentive pooling are `modules_to_save`: trained fully and saved with the adapter.
    """
    spec = dict(spec)
    target = spec.pop("target_modules", "attention")
    if isinstance(target, str) and target in TARGET_PRESETS:
        target = lora_target_modules(model.config.backbone_config.model_type, target)
    modules_to_save = ["head"]
    if getattr(model, "attentive_pooling", None) is not None:
        modules_to_save.append("attentive_pooling")
    modules_to_save += [name for name in spec.pop("modules_to_save", None) or [] if name not in modules_to_save]
    if getattr(model, "layer_weights", None) is not None:
        # PEFT saves whole modules only; the layer weights are a bare Parameter, so they keep their initial values.
        logger.warning("LoRA: the weighted layer sum keeps its initial (uniform) layer weights; they do not train")
    if base_model_name_or_path:
        model.name_or_path = base_model_name_or_path  # get_peft_model writes it to the adapter config
    try:
        config = LoraConfig(target_modules=target, modules_to_save=modules_to_save, **spec)
    except TypeError as error:
        raise ValueError(f"recipe key `peft`: {error} (keys are those of peft.LoraConfig)") from error
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / total)
    return peft_model


def prepare_lora(
    model: PreTrainedModel,
    spec: dict,
    output_dir: str | Path,
    model_name_or_path: Optional[str] = None,
    save_base: bool = True,
) -> PeftModel:
    """`apply_lora` for a training run. The adapter's base is the hf-ser checkpoint the run started from
    (`model_name_or_path`), or else `output_dir/base_model/`, written here (when `save_base`, i.e. on the main
    process): the encoder's starting weights, random or pretrained, and the initial head."""
    if model_name_or_path:
        base = model_name_or_path
    else:
        base_dir = Path(output_dir) / BASE_MODEL_DIR
        if save_base:
            model.save_pretrained(base_dir)
        base = str(base_dir.resolve())
    return apply_lora(model, spec, base_model_name_or_path=base)
