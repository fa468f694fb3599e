"""Recipe keys: three dataclasses (model, data, training) filled from a YAML recipe plus command-line overrides.

A recipe is flat YAML whose keys are the field names below or `TrainingArguments`' own. Values go through the same
argparse conversion as the command line (so `2e-5` and `2.0e-5` both work), command-line `--key value` wins, and an
unknown key is an error that names the key and the file.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, get_args, get_origin, get_type_hints

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

logger = logging.getLogger(__name__)


def launched_world_size() -> int:
    """How many processes the launcher (torchrun, `accelerate launch`, DeepSpeed) started; 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_processes_launched() -> bool:
    """Several processes were launched on a machine with no GPU (or other accelerator)."""
    return launched_world_size() > 1 and not torch.accelerator.is_available()


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
        metadata={
            "help": "Pretrained encoder to fine-tune: a Hub id (e.g. facebook/wav2vec2-large) or a local folder."
        },
    )
    backbone_config: dict | str | None = field(
        default=None,
        metadata={
            "help": "Encoder built from this config with random weights (a dict with `model_type`), when "
            "there is no `backbone`: for from-scratch and offline runs."
        },
    )
    backbone_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Encoder config values to change, for `backbone` and `backbone_config` alike, e.g. "
            "{layerdrop: 0.0, mask_time_prob: 0.0, hidden_dropout: 0.1}; saved with the model. A key the "
            "encoder's config lacks is an error."
        },
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
    whisper_clip_length: bool = field(
        default=True,
        metadata={
            "help": "Whisper encoders: encode each batch at its clips' length (positional embeddings sliced, "
            "attention masked to each clip) instead of padding every clip to 30 s; false: the released 30 s window."
        },
    )
    class_weights: Optional[str] = field(
        default=None,
        metadata={"help": "`balanced` weighs the loss by inverse training-class frequency; unset: plain loss."},
    )
    dimensional_loss: str = field(
        default="ccc",
        metadata={
            "help": "`task: dimensional`: `ccc` trains on 1 - CCC (concordance correlation, per batch, averaged over "
            "the dimensions); `mse` on the mean squared error."
        },
    )
    peft: dict | str | None = field(
        default=None,
        metadata={
            "help": "LoRA through PEFT: LoraConfig keys, e.g. {r: 8, lora_alpha: 16, lora_dropout: 0.05, "
            "target_modules: attention}; target_modules `attention` / `attention+ffn` pick the encoder's "
            "layers per backbone family; the head and pooling train fully (docs/stability.md)."
        },
    )

    def __post_init__(self):
        self.backbone_config = _json_field(self.backbone_config)
        self.backbone_overrides = _json_field(self.backbone_overrides) or {}
        self.model_config = _json_field(self.model_config) or {}
        self.peft = _json_field(self.peft)
        if self.class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights={self.class_weights!r}: use `balanced` or leave it unset")
        if self.dimensional_loss not in DIMENSIONAL_LOSSES:
            raise ValueError(f"dimensional_loss={self.dimensional_loss!r}: use one of {DIMENSIONAL_LOSSES}")


TASKS = ("categorical", "dimensional")
DIMENSIONAL_LOSSES = ("ccc", "mse")
DEFAULT_DIMENSIONS = ["arousal", "valence", "dominance"]


@dataclass
class DataArguments:
    task: str = field(
        default="categorical",
        metadata={
            "help": "`categorical`: one emotion class per clip (the `labels`); `dimensional`: regression of the "
            "`dimensions` (arousal, valence, dominance) with a CCC or MSE loss, scored by CCC (docs/recipes.md)."
        },
    )
    dimensions: list[str] = field(
        default_factory=lambda: list(DEFAULT_DIMENSIONS),
        metadata={
            "help": "`task: dimensional`: the targets, in output order; names of the corpus's dimensions (IEMOCAP, "
            "MSP-Podcast: arousal, valence, dominance) or of a CSV/JSONL manifest's numeric columns."
        },
    )
    dataset: str = field(
        default="emodb",
        metadata={
            "help": "Corpus in its official layout under data_dir: emodb, ravdess, iemocap, crema_d; or "
            "audiofolder, csv, jsonl, demo (generated smoke corpus), or a Hub dataset id (docs/corpora.md)."
        },
    )
    data_dir: Optional[str] = field(default=None, metadata={"help": "Where the corpus lives (its official layout)."})
    manifest: Optional[str] = field(default=None, metadata={"help": "CSV/JSONL manifest for `csv`/`jsonl`."})
    allow_absolute_paths: bool = field(
        default=False,
        metadata={
            "help": "Let manifest rows use absolute paths or `..` to reach audio outside the manifest's folder "
            "(refused by default, so a manifest cannot point hf-ser at arbitrary files)."
        },
    )
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
    label_targets: str = field(
        default="hard",
        metadata={
            "help": "`hard`: train on each item's one label; `soft`: on the distribution of its annotators' votes "
            "(soft cross-entropy) where the corpus has them (IEMOCAP's evaluator lines, MSP-Podcast's "
            "labels_detailed.csv, a manifest's `votes`), one-hot elsewhere; evaluation always scores the hard label "
            "(docs/recipes.md, Soft labels)."
        },
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
    use_corpus_split: bool = field(
        default=False,
        metadata={
            "help": "Split by the corpus's own partition instead of by speakers: MSP-Podcast's Split_Set (Train -> "
            "train, Development -> validation, Test1 -> test; items of other sets are left out and reported)."
        },
    )
    speaker_dependent: bool = field(
        default=False,
        metadata={
            "help": "Allow a split by file although speakers are known (speakers then leak across splits); "
            "results are labelled speaker-dependent."
        },
    )
    max_duration_seconds: float = field(
        default=6.0, metadata={"help": "Training clips are randomly cropped to this length (the seed's 6 s)."}
    )
    pad_to_max_duration: bool = field(
        default=False, metadata={"help": "Zero-pad every training clip to max_duration_seconds (the seed's way)."}
    )
    pad_to_multiple_of_seconds: float = field(
        default=0.5,
        metadata={
            "help": "Training and validation batches are padded (masked) up to a multiple of this many seconds, so "
            "a run sees a few batch shapes and the CPU allocator reuses its buffers (docs/benchmarks.md); with "
            "`length_grouping: epoch` clips of one such bucket batch at random. 0: pad to the batch's longest clip."
        },
    )
    eval_max_duration_seconds: Optional[float] = field(
        default=None, metadata={"help": "Evaluation uses whole clips; longer ones are centre-cropped to this."}
    )
    augmentations: list | str | None = field(
        default=None,
        metadata={
            "help": "audiomentations transforms for training audio: a list of {name, p, ...kwargs}; TimeStretch and "
            "PitchShift also take method: fast_phase_vocoder or soxr_speed (cheaper; docs/recipes.md)."
        },
    )
    batch_augmentations: list | str | None = field(
        default=None,
        metadata={
            "help": "Transforms of whole collated training batches on the training device (plain torch, never on "
            "evaluation): a list of {name: AddGaussianSNR | Gain | TimeMask | Mixup, p, ...kwargs} (docs/recipes.md)."
        },
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
        if self.label_targets not in ("hard", "soft"):
            raise ValueError(f"label_targets={self.label_targets!r}: use `hard` (the default) or `soft`")
        self.batch_augmentations = _json_field(self.batch_augmentations) or []
        if self.on_bad_audio not in ("skip", "error"):
            raise ValueError(f"on_bad_audio={self.on_bad_audio!r}: use `skip` or `error`")
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r}: use one of {TASKS}")
        if self.task == "dimensional" and (not self.dimensions or len(set(self.dimensions)) != len(self.dimensions)):
            raise ValueError(f"dimensions={self.dimensions}: name each target dimension once, e.g. [arousal, valence]")
        if not (self.pad_to_multiple_of_seconds == 0 or self.pad_to_multiple_of_seconds * self.sampling_rate >= 1):
            raise ValueError(
                f"pad_to_multiple_of_seconds={self.pad_to_multiple_of_seconds}: use a positive number of seconds "
                "(e.g. 0.5), or 0 to pad each batch to its longest clip"
            )

    @property
    def dimensional(self) -> bool:
        return self.task == "dimensional"

    @property
    def pad_to_multiple_of_samples(self) -> Optional[int]:
        """`pad_to_multiple_of_seconds` at `sampling_rate`, for the collator (None: no rounding)."""
        return round(self.pad_to_multiple_of_seconds * self.sampling_rate) or None


@dataclass
class SERTrainingArguments(TrainingArguments):
    """`TrainingArguments` with hf-ser's defaults: epoch-wise evaluation, best checkpoint on validation UA."""

    output_dir: Optional[str] = field(default="outputs/run", metadata={"help": "Where results and the model go."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on validation speakers."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation checkpoint."})
    metric_for_best_model: Optional[str] = field(
        default="ua",
        metadata={
            "help": "Validation metric that selects the checkpoint (and early stopping): `ua`, `wa` or `macro_f1` "
            "(trainer_state.json's best_metric is its value)."
        },
    )
    greater_is_better: Optional[bool] = field(default=True, metadata={"help": "Larger metric is better."})
    save_total_limit: Optional[int] = field(default=2, metadata={"help": "Checkpoints kept on disk."})
    # The raw audio column must reach the transform; the Trainer would drop it.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep columns for the audio transform."})
    # Classification loss is a per-example mean: averaging token counts across ranks would scale it by world size.
    average_tokens_across_devices: bool = field(default=False, metadata={"help": "Leave off for classification."})
    # Early stopping's patience counter lives in a callback: without this a resumed run restarts the count.
    restore_callback_states_from_checkpoint: bool = field(
        default=True, metadata={"help": "Restore callback state (early-stopping patience) when resuming."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh even if output_dir holds checkpoints (by default training resumes from the last)."
        },
    )
    early_stopping_patience: Optional[int] = field(
        default=None, metadata={"help": "Stop after this many evaluations without validation improvement."}
    )
    sync_batch_norm: bool = field(
        default=False,
        metadata={
            "help": "With several processes, BatchNorm statistics over the global batch (torch.nn.SyncBatchNorm; "
            "GPUs only). Off: each process normalises over its own batch (docs/scaling.md)."
        },
    )
    train_sampling_strategy: str = field(
        default="random",
        metadata={
            "help": "Training batches: `random` (the default), `group_by_length` (clips of similar duration, see "
            "length_grouping; needs the `duration` column hf-ser's corpora have), `sequential`, or `batch_rebalance` "
            "(the Trainer's samplers).",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    length_grouping: str = field(
        default="epoch",
        metadata={
            "help": "With `train_sampling_strategy: group_by_length`: `epoch` sorts the whole epoch by duration "
            "(random within each pad_to_multiple_of_seconds bucket) and shuffles the batches; `megabatch`: the "
            "Trainer's LengthGroupedSampler (sorted within random groups of up to 50 batches)."
        },
    )
    # build_corpus precomputes each clip's duration in `map`: `train_sampling_strategy: group_by_length` reads it.
    length_column_name: str = field(
        default="duration", metadata={"help": "Column of clip lengths for `train_sampling_strategy: group_by_length`."}
    )
    encoder_learning_rate: Optional[float] = field(
        default=None,
        metadata={
            "help": "Learning rate of the encoder's parameters (LoRA adapters included); the head and pooling "
            "use `learning_rate`. Unset: one learning rate for all."
        },
    )
    freeze_encoder_steps: int = field(
        default=0,
        metadata={
            "help": "Train only the head (and pooling) for this many optimizer steps, then unfreeze "
            "the encoder (the feature encoder stays as freeze_feature_encoder says)."
        },
    )
    cpu_release_freed_memory: bool = field(
        default=False,
        metadata={
            "help": "CPU training: give freed activation memory back to the OS at once (glibc's mmap threshold "
            "fixed), so peak RSS follows live memory; costs CPU time in page faults (docs/benchmarks.md)."
        },
    )
    cpu_trim_freed_memory: bool = field(
        default=False,
        metadata={
            "help": "Linux/glibc: after every optimizer step and evaluation, hand the C allocator's free pages back "
            "to the OS (malloc_trim), so host RSS does not grow with freed activation buffers (docs/benchmarks.md); "
            "costs re-faulting those pages in the next step."
        },
    )
    cpu_mmap_threshold_mib: float = field(
        default=16.0,
        metadata={
            "help": "Linux/glibc: freed buffers of at least this many MiB (the large activations of a batch) go back "
            "to the OS at once: glibc's mmap threshold is fixed here instead of rising with what was freed (to 32 "
            "MiB), so buffers of other batch shapes do not pile up in its heap; smaller ones stay with the allocator "
            "(cpu_trim_freed_memory returns those too, each step). 0: glibc's own threshold. "
            "cpu_release_freed_memory replaces it (128 KiB)."
        },
    )
    precise_bn_batches: Optional[int] = field(
        default=None,
        metadata={
            "help": "Before each evaluation, recompute BatchNorm statistics over this many batches of clean "
            "(non-augmented) training windows instead of using running averages. Unset: 8 for models with "
            "BatchNorm (the seed's head, SERCNN), off without; 0: off (docs/recipes.md)."
        },
    )

    bootstrap_samples: int = field(
        default=1000,
        metadata={
            "help": "Resamples of the scored clips for the 95 %% bootstrap confidence intervals of WA, UA and macro-F1 "
            "in eval/test_results.json (seeded with `seed`); 0: no intervals (docs/recipes.md)."
        },
    )

    def __post_init__(self):
        if self.length_grouping not in ("epoch", "megabatch"):
            raise ValueError(f"length_grouping={self.length_grouping!r}: use `epoch` or `megabatch`")
        if not 0 <= self.cpu_mmap_threshold_mib <= 32:
            raise ValueError(
                f"cpu_mmap_threshold_mib={self.cpu_mmap_threshold_mib}: glibc takes up to 32 MiB; 0 keeps its own"
            )
        if self.bootstrap_samples < 0:
            raise ValueError(f"bootstrap_samples={self.bootstrap_samples}: use 0 (off) or a number of resamples")
        if cpu_processes_launched() and (self.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"):
            # accelerate (1.15) sets up FSDP only for GPU-type processes; on CPU processes it silently trains plain
            # DDP instead, with full weights and optimizer states on every process (docs/scaling.md, "FSDP").
            raise ValueError(
                f"FSDP needs GPUs: these {launched_world_size()} processes run on CPU, where accelerate would "
                "silently train plain DDP instead of sharding; use accelerate_configs/multi_gpu.yaml (DDP) or "
                "deepspeed_zero2.yaml / deepspeed_zero3.yaml (sharded, works on CPU) here"
            )
        if not self.use_cpu and cpu_processes_launched():
            # Without `use_cpu`, transformers sets up no data parallelism for CPU processes: each would train alone on
            # all the data and they would overwrite each other's files. With it, accelerate runs DDP over gloo.
            logger.info(
                "%s processes launched without a GPU: data-parallel training on CPU (gloo)", launched_world_size()
            )
            self.use_cpu = True
        if self.freeze_encoder_steps > 0:
            # The Trainer wraps the model in DDP before the encoder is frozen, so DDP expects gradients for it; with
            # gradient checkpointing it would not look for unused parameters and stop with "Expected to have
            # finished reduction in the prior iteration". Unused-parameter detection covers the frozen steps.
            if self.ddp_find_unused_parameters is False:
                raise ValueError(
                    "freeze_encoder_steps needs ddp_find_unused_parameters: true (the frozen encoder gets no "
                    "gradients for the first steps); remove ddp_find_unused_parameters: false from the recipe"
                )
            self.ddp_find_unused_parameters = True
        super().__post_init__()
        if self.early_stopping_patience and self.eval_strategy == "no":  # the callback would stop with an assertion
            raise ValueError(
                f"early_stopping_patience={self.early_stopping_patience} counts evaluations, and eval_strategy is "
                "`no`: set eval_strategy (epoch or steps), or early_stopping_patience: 0"
            )
        if self.metric_for_best_model and self.metric_for_best_model.startswith("test"):
            raise ValueError("metric_for_best_model must be a validation metric: the test split never selects models")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, SERTrainingArguments)
# List keys whose empty value differs from unset: `validation_speakers: []` is a run with no validation split (a
# fixed-length run, as `hf-ser cv --refit` trains); unset, the validation speakers are drawn.
MEANINGFUL_EMPTY_LISTS = ("validation_speakers",)

# `--validation_speakers none` (or `validation_speakers: none` in a recipe) clears a list key whose default is unset.
CLEAR = "none"


class RecipeParser(HfArgumentParser):
    """`HfArgumentParser` whose `--help` lists hf-ser's keys first, in argument groups (data, model, training), and
    the keys `SERTrainingArguments` inherits from `transformers.TrainingArguments` after them."""

    GROUPS = {
        "data": "data (DataArguments)",
        "model": "model (ModelArguments)",
        "training": "training: hf-ser's own keys and defaults (SERTrainingArguments)",
        "trainer": "Trainer options (transformers.TrainingArguments; https://huggingface.co/docs/transformers/main_classes/trainer)",
    }

    def _add_dataclass_arguments(self, dtype) -> None:
        if not hasattr(self, "_groups"):  # created once, in GROUPS' order, which is the order --help prints them in
            self._groups = {name: self.add_argument_group(title) for name, title in self.GROUPS.items()}
        own_training_keys = vars(SERTrainingArguments).get("__annotations__", {})
        type_hints = get_type_hints(dtype)
        for field_ in fields(dtype):
            if not field_.init:
                continue
            field_.type = type_hints[field_.name]  # what HfArgumentParser's own loop does
            if dtype is DataArguments:
                group = "data"
            elif dtype is ModelArguments:
                group = "model"
            else:
                group = "training" if field_.name in own_training_keys else "trainer"
            self._parse_dataclass_field(self._groups[group], field_)


def value_source(args: Any, key: str) -> str:
    """Where the value of `key` came from, for error messages: ` (from recipes/base.yaml)`, ` (from the command
    line)`, ... ; empty for a default, or for arguments not made by `parse_args`."""
    source = getattr(args, "value_sources", {}).get(key)
    return f" (from {source})" if source else ""


def _clearable_list_keys(cls) -> set[str]:
    """List keys whose default is unset: `none` clears them."""
    type_hints = get_type_hints(cls)
    return {
        f.name
        for f in fields(cls)
        if f.init
        and f.default is None
        and {get_origin(arg) or arg for arg in get_args(type_hints[f.name])} == {list, type(None)}
    }


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
            raise ValueError(f"{path}: unknown recipe key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return recipe


USAGE = (
    "hf-ser train RECIPE [--key value ...]\n"
    "       accelerate launch [--config_file accelerate_configs/X.yaml] hf_ser/train.py RECIPE [--key value ...]"
)


def parse_args(
    argv: Optional[list[str]] = None, defaults: Optional[dict] = None, defaults_source: str | dict = "defaults"
) -> tuple[ModelArguments, DataArguments, SERTrainingArguments]:
    """`RECIPE.yaml [--key value ...]` (or only `--key value ...`) into the three argument dataclasses.

    `defaults` are key values below the recipe's and the command line's (`hf-ser evaluate` gives a run's data keys);
    `defaults_source` names where they came from (one name, or one per key). Each returned dataclass has
    `value_sources`: where each value that is not a dataclass default came from (see `value_source`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv and defaults is None:
        raise ValueError(f"no recipe: {USAGE.splitlines()[0]} (recipes/ has examples; --help lists every key)")
    recipe_path, recipe = None, {}
    parser = RecipeParser(
        ARGUMENT_CLASSES,
        prog="hf-ser train",
        allow_abbrev=False,  # a typo such as --learning_rat must not silently mean --learning_rate
        usage=USAGE,
        description="RECIPE is a YAML file of keys below (recipes/ has examples); a command-line --key value "
        f"overrides the recipe's. `--KEY {CLEAR}` clears a list key that a recipe set (e.g. --validation_speakers "
        f"{CLEAR} --test_speakers {CLEAR} for an automatic speaker split).",
    )
    overridden = list(  # in command-line order, for messages
        dict.fromkeys(token.lstrip("-").split("=")[0].replace("-", "_") for token in argv if token.startswith("--"))
    )
    if argv and argv[0].endswith((".yaml", ".yml")):
        recipe_path = argv.pop(0)
        recipe = {key: value for key, value in load_recipe(recipe_path).items() if key not in overridden}
    defaults = {key: value for key, value in (defaults or {}).items() if key not in overridden and key not in recipe}
    sources = {
        key: defaults_source.get(key, "defaults") if isinstance(defaults_source, dict) else defaults_source
        for key in defaults
    }
    sources.update({key: str(recipe_path) for key in recipe})
    sources.update({key: "the command line" for key in overridden})
    given_argv: list[str] = []
    for key, value in [*defaults.items(), *recipe.items()]:
        tokens = _as_argv(key, value)
        action = parser._option_string_actions.get(f"--{key}")
        if len(tokens) > 2 and action is not None and action.nargs is None:
            kind = "recipe key" if key in recipe else "key"
            raise ValueError(f"{sources[key]}: {kind} {key!r} takes one value, got the list {value}")
        given_argv += tokens

    def error(message: str):
        # argparse would print usage and exit; name the key and where its bad value came from instead.
        match = re.search(r"argument --(\w+)", message)
        source = sources.get(match[1], "the command line") if match else "the command line"
        prefixes = {str(recipe_path): f"recipe {recipe_path}", "the command line": "command line"}
        raise ValueError(f"{prefixes.get(source, source)}: {message}")

    parser.error = error
    # argparse keeps the last occurrence of an option: command-line overrides follow the recipe's values.
    *parsed, unknown = parser.parse_args_into_dataclasses(args=given_argv + argv, return_remaining_strings=True)
    if unknown:
        known = [f"--{key}" for key in recipe_keys()]
        hints = [
            f"{token} (did you mean {match[0]!r}?)"
            if (match := difflib.get_close_matches(token.split("=")[0], known, n=1))
            else token
            for token in unknown
            if token.startswith("--")
        ]
        raise ValueError(
            f"unknown command-line option(s) {', '.join(hints) or unknown}; `hf-ser train --help` lists every recipe key"
        )
    for args in parsed[:2]:  # TrainingArguments' own lists keep their meanings (`report_to: none`)
        for key in _clearable_list_keys(type(args)):
            if getattr(args, key) == [CLEAR]:
                setattr(args, key, None)
    # argv cannot spell an empty list: keep the ones that mean something from the recipe or the defaults
    # (`hf-ser evaluate` passes a refit run's keys).
    given = {**defaults, **recipe}
    for key in MEANINGFUL_EMPTY_LISTS:
        if given.get(key) == []:
            setattr(next(args for args in parsed if key in args.__dataclass_fields__), key, [])
    for args in parsed:
        args.value_sources = {key: source for key, source in sources.items() if key in args.__dataclass_fields__}
    check_combinations(*parsed)
    return tuple(parsed)


def check_combinations(
    model_args: ModelArguments, data_args: DataArguments, training_args: SERTrainingArguments
) -> None:
    """Refuse, before any data is read, option combinations that cannot work together."""
    problems = []
    scratch_cnn = model_args.model_type == "ser-cnn" and not model_args.model_name_or_path
    if scratch_cnn:
        encoder_keys = [key for key in ("backbone", "backbone_config", "peft") if getattr(model_args, key)]
        encoder_keys += ["backbone_overrides"] if model_args.backbone_overrides else []
        encoder_keys += [key for key in ("encoder_learning_rate",) if getattr(training_args, key) is not None]
        encoder_keys += ["freeze_encoder_steps"] if training_args.freeze_encoder_steps else []
        if encoder_keys:
            problems.append(f"model_type ser-cnn has no pretrained encoder, so {encoder_keys} do not apply")
    if model_args.peft and training_args.freeze_encoder_steps:
        problems.append("freeze_encoder_steps does not combine with `peft`: LoRA already freezes the encoder")
    if model_args.backbone and model_args.backbone_config:
        problems.append("set `backbone` (pretrained encoder) or `backbone_config` (random encoder), not both")
    batch_norm = scratch_cnn or (model_args.model_type == "wav2vec2-ser" and model_args.head_batch_norm)
    if batch_norm and not model_args.model_name_or_path and training_args.per_device_train_batch_size < 2:
        problems.append(
            f"per_device_train_batch_size={training_args.per_device_train_batch_size} with a BatchNorm model: use 2 "
            "or more (gradient_accumulation_steps keeps the effective batch), or head_batch_norm: false"
        )
    if data_args.use_corpus_split:
        listed = [
            f"{name}_speakers" for name in ("train", "validation", "test") if getattr(data_args, f"{name}_speakers")
        ]
        if listed or data_args.speaker_dependent:
            problems.append(
                f"use_corpus_split takes the corpus's own partition: drop {listed or ['speaker_dependent']} (or "
                "clear a recipe's speaker lists with `--KEY none`)"
            )
    if data_args.dimensional:
        problems += dimensional_problems(model_args, data_args, training_args)
    if problems:
        raise ValueError("; ".join(problems))


DIMENSIONAL_SELECTION = "ccc"  # validation mean CCC over the dimensions


def refuse_dimensional(data_args: DataArguments, command: str) -> None:
    """The commands that score classes only (cv, seeds, sweep, evaluate) refuse `task: dimensional` in one line."""
    if data_args.dimensional:
        raise ValueError(
            f"hf-ser {command} scores emotion classes; it does not support task: dimensional yet (hf-ser train "
            "trains and scores a dimensional model)"
        )


def dimensional_problems(
    model_args: ModelArguments, data_args: DataArguments, training_args: SERTrainingArguments
) -> list[str]:
    """What `task: dimensional` cannot combine with; selects on validation mean CCC unless the recipe chose a CCC
    (`ccc_arousal`, ...)."""
    problems = []
    metric = (training_args.metric_for_best_model or "").removeprefix("eval_")
    if not metric.startswith(DIMENSIONAL_SELECTION):
        if "metric_for_best_model" in getattr(training_args, "value_sources", {}):
            problems.append(
                f"metric_for_best_model={training_args.metric_for_best_model!r}"
                f"{value_source(training_args, 'metric_for_best_model')} is a categorical score; `task: dimensional` "
                f"selects on ccc (the mean over the dimensions) or ccc_<dimension>"
            )
        else:
            training_args.metric_for_best_model = DIMENSIONAL_SELECTION
    if model_args.class_weights:
        problems.append("class_weights weigh classes; `task: dimensional` has none")
    if data_args.label_targets == "soft":
        problems.append("label_targets: soft trains on class votes; `task: dimensional` regresses dimension values")
    if model_args.dimensional_loss == "ccc" and training_args.per_device_train_batch_size < 2:
        problems.append("dimensional_loss ccc is computed over each batch: use per_device_train_batch_size 2 or more")
    return problems
