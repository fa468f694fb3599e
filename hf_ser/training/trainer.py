"""`SERTrainer`: the `Trainer` with what hf-ser's data and recipes need.

- Length-grouped batches (`train_sampling_strategy: group_by_length`; the default stays `random`) from the
  `duration` column that `build_corpus` computes in `map`: the audio transform hides every column but its outputs, so
  the sampler reads the plain table. `length_grouping: epoch` (default) sorts the whole epoch (`hf_ser.data.sampler`), `megabatch` uses
  the Trainer's `LengthGroupedSampler`. Evaluation and prediction keep the dataset's order (the Trainer would
  length-group them too, and per-clip predictions are written in dataset order).
- `encoder_learning_rate`: the encoder's parameters in their own optimizer groups, the head and pooling on
  `learning_rate`, with the Trainer's own weight-decay rules (no decay on biases and norms).
- `cpu_mmap_threshold_mib` (default 16): freed buffers of that size or more go back to the OS at once;
  `cpu_trim_freed_memory` (opt-in): after each step, the smaller freed ones too (`TrimFreedMemoryCallback`);
  `cpu_release_freed_memory`: every buffer of 128 KiB or more at once (hf_ser/training/cpu_memory.py).
- No "Writing model shards" progress bar for each checkpoint and the final save (transformers draws one even for a
  one-file model); the Trainer's own training bar stays.
- `label_targets: soft`: training batches carry `label_distribution` (annotator votes), and the loss is the soft
  cross-entropy against it (hf_ser/training/soft_labels.py) with the model's class weights; evaluation batches carry
  the hard label only, so their loss is the model's own.
- `batch_augmentations` (`hf_ser.data.batch_augment`): noise, gain and time masks on each collated training batch, on
  the training device, in `training_step` only, so evaluation and prediction batches never see them.
- No pinned memory without an accelerator: torch would warn that it cannot pin at every DataLoader the Trainer builds
  (each evaluation), and pinning does nothing there.
"""

from __future__ import annotations

from typing import Optional

import datasets
import torch
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_utils import unwrap_peft_model
from transformers.utils import logging as transformers_logging

from hf_ser.data.batch_augment import BatchAugmenter
from hf_ser.data.sampler import EpochLengthGroupedSampler
from hf_ser.data.votes import LABEL_DISTRIBUTION
from hf_ser.training.callbacks import TrimFreedMemoryCallback
from hf_ser.training.cpu_memory import glibc_malloc, release_freed_memory
from hf_ser.training.distributed import skip_deepspeed_cpu_inference_op
from hf_ser.training.soft_labels import soft_cross_entropy

LENGTH_STRATEGIES = ("group_by_length", "batch_rebalance")


def encoder_parameter_ids(model: nn.Module) -> set[int]:
    """Ids of the encoder's parameters (LoRA adapters inside it included) of an hf-ser model, PEFT-wrapped or not."""
    encoder = getattr(unwrap_peft_model(model), "encoder", None)
    if encoder is None:
        raise ValueError(
            f"encoder_learning_rate needs a model with an `encoder`; {type(unwrap_peft_model(model)).__name__} has "
            "none: leave encoder_learning_rate unset"
        )
    return {id(parameter) for parameter in encoder.parameters()}


class SERTrainer(Trainer):
    """`length_cap` (seconds: the training crop) and `length_bucket` (seconds: the collator's padding multiple) tell
    `length_grouping: epoch` which clips batch alike; hf_ser.train passes the recipe's values."""

    # Both losses (the model's and the soft one) are per-batch means: the Trainer divides them for accumulation.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args,
        batch_augmenter: Optional[BatchAugmenter] = None,
        length_cap: Optional[float] = None,
        length_bucket: Optional[float] = None,
        **kwargs,
    ):
        self.length_cap, self.length_bucket = length_cap, length_bucket
        super().__init__(*args, **kwargs)
        self.batch_augmenter = batch_augmenter
        self._micro_batch = (-1, 0)  # (optimizer step, micro-batch within it): the key of the batch transforms' draws
        skip_deepspeed_cpu_inference_op(self.args)  # before DeepSpeed sets up communication, in train()
        if self.args.dataloader_pin_memory and not torch.accelerator.is_available():
            self.args.dataloader_pin_memory = False
        if getattr(self.args, "cpu_release_freed_memory", False):
            release_freed_memory()
        else:
            threshold_mib = getattr(self.args, "cpu_mmap_threshold_mib", 0)
            if threshold_mib and glibc_malloc():  # a default: no warning on other C libraries
                release_freed_memory(round(threshold_mib * 2**20), "cpu_mmap_threshold_mib")
            if getattr(self.args, "cpu_trim_freed_memory", False):
                self.add_callback(TrimFreedMemoryCallback())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if LABEL_DISTRIBUTION not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        targets = inputs.pop(LABEL_DISTRIBUTION)
        inputs.pop("labels", None)  # the model would compute its hard loss too
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        config = unwrap_peft_model(self.accelerator.unwrap_model(model)).config
        loss = soft_cross_entropy(logits, targets, getattr(config, "class_weights", None))
        return (loss, outputs) if return_outputs else loss

    def save_model(self, *args, **kwargs) -> None:
        was_enabled = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            super().save_model(*args, **kwargs)
        finally:
            if was_enabled:
                transformers_logging.enable_progress_bar()

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.batch_augmenter is not None:
            step, index = self._micro_batch
            self._micro_batch = (self.state.global_step, index + 1 if step == self.state.global_step else 0)
            inputs = self._prepare_inputs(inputs)  # on the device; the Trainer's own call then moves nothing
            generator = self.batch_augmenter.generator(
                inputs["input_values"].device, self.args.process_index, *self._micro_batch
            )
            with torch.no_grad():
                inputs = self.batch_augmenter(inputs, generator)
        return super().training_step(model, inputs, num_items_in_batch)

    def _with_visible_lengths(self, dataset):
        """The dataset as the length-grouping samplers need it: they read only its size and length column, which the
        audio transform hides; `with_format(None)` shows the plain table."""
        if self.args.train_sampling_strategy not in LENGTH_STRATEGIES or not isinstance(dataset, datasets.Dataset):
            return dataset
        column = self.args.length_column_name
        if column not in dataset.column_names:
            raise ValueError(
                f"length_column_name {column!r} is not a column of the dataset (columns: {dataset.column_names}); "
                "hf-ser's corpora have `duration`"
            )
        return dataset.with_format(None)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self._with_visible_lengths(self.train_dataset if train_dataset is None else train_dataset)
        if (
            self.args.train_sampling_strategy != "group_by_length"
            or getattr(self.args, "length_grouping", "megabatch") != "epoch"
            or not isinstance(dataset, datasets.Dataset)
        ):
            return super()._get_train_sampler(dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # one group per optimizer step of all processes, as the Trainer's sampler groups per step
        group = self._train_batch_size * self.args.gradient_accumulation_steps * max(1, self.args.world_size)
        return EpochLengthGroupedSampler(
            dataset[self.args.length_column_name],
            group,
            seed=seed,
            max_length=self.length_cap,
            bucket=self.length_bucket,
        )

    def _get_eval_sampler(self, eval_dataset):
        if self.args.train_sampling_strategy in LENGTH_STRATEGIES:
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)

    def create_optimizer(self, model=None):
        if self.args.encoder_learning_rate is None or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        encoder_ids = encoder_parameter_ids(model)
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((id(parameter) in encoder_ids, name in decay), []).append(parameter)
        param_groups = [
            {
                "params": parameters,
                "weight_decay": self.args.weight_decay if decayed else 0.0,
                "lr": self.args.encoder_learning_rate if in_encoder else self.args.learning_rate,
            }
            for (in_encoder, decayed), parameters in sorted(groups.items())
        ]
        optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs or self.get_optimizer_cls_and_kwargs(
            self.args, model
        )
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer
