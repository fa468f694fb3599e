"""Recipe keys: three dataclasses (model, data, training) filled from a YAML recipe plus command-line overrides.

A recipe is flat YAML whose keys are the field names below or `TrainingArguments`' own. Values go through the same
argparse conversion as the command line (so `2e-5` and `2.0e-5` both work), command-line `--key value` wins, and an
unknown key is an error that names the key and the file.
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml
from transformers import HfArgumentParser, TrainingArguments


def _json_field(value):
    """Complex recipe values (lists of dicts, dicts) travel through argparse as JSON text."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class ModelArguments:
    model_type: str = field(
        default="wav2vec2-ser", metadata={"help": "Architecture: `wav2vec2-ser` (speech encoder + head) or `ser-cnn`."}
    )
    backbone: Optional[str] = field(
        default=None,
        metadata={"help": "Pretrained encoder to fine-tune: a Hub id (e.g. facebook/wav2vec2-large) or a local folder."},
    )
    backbone_config: dict | str | None = field(
        default=None,
        metadata={"help": "Encoder built from this config with random weights (a dict with `model_type`), when "
                  "there is no `backbone`: for from-scratch and offline runs."},
    )
    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Start from a saved hf-ser checkpoint (folder or Hub id) instead."}
    )
    model_config: dict | str | None = field(
        default=None,
        metadata={"help": "Extra architecture settings for the model's config (e.g. for `ser-cnn`: feature_type)."},
    )
    pooling: str = field(default="mean", metadata={"help": "Frame pooling: `mean` or `attentive_stats`."})
    use_weighted_layer_sum: bool = field(
        default=False, metadata={"help": "Pool a learned weighted sum of all encoder layers."}
    )
    head_hidden_sizes: list[int] = field(
        default_factory=lambda: [512, 256], metadata={"help": "Hidden sizes of the MLP head (the seed's: 512 256)."}
    )
    head_dropout: float = field(default=0.3, metadata={"help": "Dropout after each hidden layer of the head."})
    head_batch_norm: bool = field(default=True, metadata={"help": "BatchNorm1d after each hidden Linear (the seed's)."})
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Keep the convolutional feature encoder frozen (the seed's default)."}
    )
    class_weights: Optional[str] = field(
        default=None,
        metadata={"help": "`balanced` weighs the loss by inverse training-class frequency; unset: plain loss."},
    )

    def __post_init__(self):
        self.backbone_config = _json_field(self.backbone_config)
        self.model_config = _json_field(self.model_config) or {}
        if self.class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights={self.class_weights!r}: use `balanced` or leave it unset")


@dataclass
class DataArguments:
    dataset: str = field(
        default="emodb",
        metadata={"help": "Corpus: emodb, audiofolder, csv, jsonl, demo (generated smoke corpus), or a Hub dataset id."},
    )
    data_dir: Optional[str] = field(default=None, metadata={"help": "Where the corpus lives (its official layout)."})
    manifest: Optional[str] = field(default=None, metadata={"help": "CSV/JSONL manifest for `csv`/`jsonl`."})
    speaker_pattern: Optional[str] = field(
        default=None, metadata={"help": "Regex that finds the speaker in a file name (audiofolder)."}
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration."})
    audio_column: str = field(default="audio", metadata={"help": "Hub dataset: audio column."})
    label_column: str = field(default="label", metadata={"help": "Hub dataset: label column."})
    speaker_column: Optional[str] = field(default=None, metadata={"help": "Hub dataset: speaker column."})
    labels: Optional[list[str]] = field(
        default=None, metadata={"help": "Keep only these labels, in this order (e.g. IEMOCAP's 4 classes)."}
    )
    label_map: dict | str | None = field(
        default=None, metadata={"help": "Rename labels before selection, e.g. {excited: happiness}."}
    )
    train_speakers: Optional[list[str]] = field(default=None, metadata={"help": "Training speakers."})
    validation_speakers: Optional[list[str]] = field(default=None, metadata={"help": "Validation speakers."})
    test_speakers: Optional[list[str]] = field(default=None, metadata={"help": "Test speakers."})
    validation_fraction: float = field(
        default=0.15, metadata={"help": "Share of speakers (or files, without speakers) held out for validation."}
    )
    test_fraction: float = field(
        default=0.15, metadata={"help": "Share of speakers (or files, without speakers) held out for test."}
    )
    speaker_dependent: bool = field(
        default=False,
        metadata={"help": "Allow a split by file although speakers are known (speakers then leak across splits); "
                  "results are labelled speaker-dependent."},
    )
    max_duration_seconds: float = field(
        default=6.0, metadata={"help": "Training clips are randomly cropped to this length (the seed's 6 s)."}
    )
    pad_to_max_duration: bool = field(
        default=False, metadata={"help": "Zero-pad every training clip to max_duration_seconds (the seed's way)."}
    )
    eval_max_duration_seconds: Optional[float] = field(
        default=None, metadata={"help": "Evaluation uses whole clips; longer ones are centre-cropped to this."}
    )
    augmentations: list | str | None = field(
        default=None,
        metadata={"help": "audiomentations transforms for training audio: a list of {name, p, ...kwargs}."},
    )
    on_bad_audio: str = field(
        default="skip",
        metadata={"help": "`skip`: drop and report undecodable files; `error`: stop at the first one."},
    )
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Truncate the training split (debug)."})
    sampling_rate: int = field(default=16_000, metadata={"help": "Model sampling rate; audio is resampled to it."})

    def __post_init__(self):
        self.label_map = _json_field(self.label_map) or {}
        self.augmentations = _json_field(self.augmentations) or []
        if self.on_bad_audio not in ("skip", "error"):
            raise ValueError(f"on_bad_audio={self.on_bad_audio!r}: use `skip` or `error`")


@dataclass
class SERTrainingArguments(TrainingArguments):
    """`TrainingArguments` with hf-ser's defaults: epoch-wise evaluation, best checkpoint on validation UA."""

    output_dir: Optional[str] = field(default="outputs/run", metadata={"help": "Where results and the model go."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on validation speakers."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation checkpoint."})
    metric_for_best_model: Optional[str] = field(default="ua", metadata={"help": "Validation metric for selection."})
    greater_is_better: Optional[bool] = field(default=True, metadata={"help": "Larger metric is better."})
    save_total_limit: Optional[int] = field(default=2, metadata={"help": "Checkpoints kept on disk."})
    # The raw audio column must reach the transform; the Trainer would drop it.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep columns for the audio transform."})
    # Classification loss is a per-example mean: averaging token counts across ranks would scale it by world size.
    average_tokens_across_devices: bool = field(default=False, metadata={"help": "Leave off for classification."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh even if output_dir holds checkpoints (by default training resumes from the last)."},
    )
    early_stopping_patience: Optional[int] = field(
        default=None, metadata={"help": "Stop after this many evaluations without validation improvement."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.metric_for_best_model and self.metric_for_best_model.startswith("test"):
            raise ValueError("metric_for_best_model must be a validation metric: the test split never selects models")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, SERTrainingArguments)


def recipe_keys() -> set[str]:
    return {f.name for cls in ARGUMENT_CLASSES for f in fields(cls) if f.init}


def _as_argv(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{key}", str(value).lower()]
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
        return [f"--{key}", json.dumps(value)]
    if isinstance(value, list):
        return [f"--{key}", *map(str, value)] if value else []
    return [f"--{key}", str(value)]


def load_recipe(path: str | Path) -> dict:
    """The recipe's keys and values, checked against the known recipe keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of keys to values, got {type(recipe).__name__}")
    known = recipe_keys()
    for key in recipe:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ValueError(
                f"{path}: unknown recipe key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    return recipe


def parse_args(argv: Optional[list[str]] = None) -> tuple[ModelArguments, DataArguments, SERTrainingArguments]:
    """`RECIPE.yaml [--key value ...]` (or only `--key value ...`) into the three argument dataclasses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_argv: list[str] = []
    if argv and argv[0].endswith((".yaml", ".yml")):
        for key, value in load_recipe(argv.pop(0)).items():
            recipe_argv += _as_argv(key, value)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    # argparse keeps the last occurrence of an option: command-line overrides follow the recipe's values.
    *parsed, unknown = parser.parse_args_into_dataclasses(args=recipe_argv + argv, return_remaining_strings=True)
    if unknown:
        raise ValueError(f"unknown command-line option(s) {unknown}; `hf-ser train --help` lists every recipe key")
    return tuple(parsed)
