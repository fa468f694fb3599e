"""Trainer callbacks of hf-ser.

`FreezeEncoderCallback` trains the head alone for the first steps, then the whole model.

`TrimFreedMemoryCallback` returns the CPU allocator's freed memory to the OS after each step
(`cpu_trim_freed_memory`; hf_ser/training/cpu_memory.py explains why RSS grows otherwise).

`PreciseBatchNormCallback` recomputes BatchNorm statistics before every evaluation. Running averages lag behind the
weights (each one mixes statistics of many past weight settings, and of augmented audio), which made the validation
UA of a plain CNN on EmoDB swing by 30 points from epoch to epoch; statistics recomputed on clean training windows
for the current weights remove that swing (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, call this
"precise BN").
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset
from transformers import TrainerCallback

from hf_ser.data.votes import LABEL_DISTRIBUTION
from hf_ser.training.cpu_memory import freed_bytes_held, trim_freed_memory

logger = logging.getLogger(__name__)


def batch_norm_layers(model: nn.Module, running_stats_only: bool = True) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (1d, 2d, 3d, sync) that keeps running statistics; all of them without
    `running_stats_only`."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.track_running_stats or not running_stats_only)
    ]


DEFAULT_PRECISE_BN_BATCHES = 8


def resolve_precise_bn_batches(requested: Optional[int], model: nn.Module) -> int:
    """`precise_bn_batches` as the run uses it: unset means on (DEFAULT_PRECISE_BN_BATCHES) for a model with
    BatchNorm and off without; a number is taken as given (0: off)."""
    if requested is not None:
        return requested
    return DEFAULT_PRECISE_BN_BATCHES if batch_norm_layers(model) else 0


def check_batch_norm_batch_size(model: nn.Module, per_device_train_batch_size: int) -> None:
    """Refuse training batches of one example for a model with BatchNorm: statistics of one example are undefined,
    so its BatchNorm layers would normalise with running statistics that never update."""
    if per_device_train_batch_size < 2 and batch_norm_layers(model):
        raise ValueError(
            f"per_device_train_batch_size={per_device_train_batch_size} with a BatchNorm model: BatchNorm cannot "
            "compute the statistics of one example, so its running statistics would never update. Use a "
            "per-device batch of 2 or more (gradient_accumulation_steps keeps the effective batch), or "
            "head_batch_norm: false"
        )


def rank_windows(num_examples: int, generator: torch.Generator, rank: int, world_size: int) -> list[int]:
    """This rank's share of one seeded shuffle of the examples: the ranks see disjoint windows."""
    return torch.randperm(num_examples, generator=generator)[rank::world_size].tolist()


def _model_inputs(batch: dict, parameter: torch.Tensor) -> dict:
    """A batch as the model takes it: on its device, floating inputs in its parameters' dtype (a bf16 DeepSpeed
    model gets bf16 inputs from the Trainer too); targets dropped."""
    return {
        key: value.to(device=parameter.device, dtype=parameter.dtype if value.is_floating_point() else value.dtype)
        for key, value in batch.items()
        if key not in ("labels", LABEL_DISTRIBUTION)
    }


@torch.no_grad()
def recompute_batch_norm_statistics(model: nn.Module, batches, num_batches: int) -> int:
    """Replace the running mean and variance of every BatchNorm layer by their exact averages over `num_batches`
    batches (a `momentum=None` cumulative average: each batch counts equally).

    The model runs in evaluation mode except for its BatchNorm layers, so dropout and any training-time masking are
    off and the statistics describe what the layers will see in evaluation. Momenta and every module's train/eval
    mode are restored afterwards. `batches` is an iterable that is iterated again when it runs out. Returns the
    number of BatchNorm layers updated.
    """
    layers = batch_norm_layers(model)
    if not layers or num_batches <= 0:
        return 0
    modes = {module: module.training for module in model.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    parameter = next(p for p in model.parameters() if p.is_floating_point())
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        seen = 0
        while seen < num_batches:
            before = seen
            for batch in batches:
                model(**_model_inputs(batch, parameter))
                seen += 1
                if seen == num_batches:
                    break
            if seen == before:
                raise ValueError("precise BatchNorm: the training data gave no batch to recompute statistics on")
        if dist.is_available() and dist.is_initialized():  # every process saw its own windows: average them
            for layer in layers:
                for buffer in (layer.running_mean, layer.running_var):
                    dist.all_reduce(buffer)
                    buffer /= dist.get_world_size()
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for module, training in modes.items():
            module.train(training)
    return len(layers)


class FreezeEncoderCallback(TrainerCallback):
    """Train only the head (and pooling) for the first `steps` optimizer steps, then unfreeze the encoder.

    The Trainer builds its optimizer before `on_train_begin`, so the encoder's parameters are in its parameter groups
    from the start; while frozen they get no gradient and AdamW leaves them untouched. Recipe key:
    `freeze_encoder_steps` (0 = off).
    """

    def __init__(self, steps: int):
        if steps <= 0:
            raise ValueError(f"freeze_encoder_steps={steps}: give a positive number of steps (0 turns it off)")
        self.steps = steps

    @staticmethod
    def _set_frozen(model: nn.Module, frozen: bool) -> None:
        if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):  # a PeftModel: unfreezing undoes LoRA
            raise ValueError("freeze_encoder_steps does not combine with `peft`: LoRA already freezes the encoder")
        if not hasattr(model, "freeze_encoder"):
            raise TypeError(
                f"freeze_encoder_steps needs a model with `freeze_encoder` (Wav2Vec2SER), got {type(model).__name__}"
            )
        model.freeze_encoder(frozen)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step < self.steps:  # a run resumed past the frozen steps starts unfrozen
            self._set_frozen(model, True)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.steps:
            self._set_frozen(model, False)


class PreciseBatchNormCallback(TrainerCallback):
    """Before each evaluation (and at the end of training), recompute BatchNorm statistics on `num_batches` batches
    of `dataset`: the training split with the training crop but no augmentation (`hf_ser.data.transforms.clean_training_view`).

    The checkpoint saved after an evaluation holds these statistics, so the best model and the final model carry them.
    Recipe key: `precise_bn_batches` (unset: on for models with BatchNorm; 0 = off).
    """

    def __init__(self, dataset, data_collator: Callable, num_batches: int, batch_size: int, seed: int = 0):
        if num_batches <= 0:
            raise ValueError(f"precise_bn_batches={num_batches}: give a positive number of batches (0 turns it off)")
        self.dataset = dataset
        self.data_collator = data_collator
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.seed = seed
        self.recomputed_at_step: Optional[int] = None

    def recompute(self, model: nn.Module, step: int) -> None:
        if self.recomputed_at_step == step:  # nothing was trained since the last recomputation
            return
        generator = torch.Generator().manual_seed(self.seed + step)  # the same shuffle on every rank
        transform = getattr(self.dataset, "format", {}).get("format_kwargs", {}).get("transform")
        if hasattr(transform, "set_epoch"):  # crops keyed by step, not by how often this process has read a file
            transform.set_epoch(step)
        rank, world_size = (
            (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        )
        # Each rank takes its own share of the windows (and of the batches); the statistics are averaged after.
        indices = rank_windows(len(self.dataset), generator, rank, world_size)
        loader = DataLoader(Subset(self.dataset, indices), batch_size=self.batch_size, collate_fn=self.data_collator)
        if recompute_batch_norm_statistics(model, loader, math.ceil(self.num_batches / world_size)) == 0:
            logger.warning("precise_bn_batches is set but the model has no BatchNorm layer; nothing to recompute")
        self.recomputed_at_step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_evaluate:
            self.recompute(model, state.global_step)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if control.should_evaluate:
            self.recompute(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        # A reloaded best checkpoint already holds the statistics recomputed when it was evaluated: keep them.
        if args.load_best_model_at_end and state.best_model_checkpoint:
            return
        # Without a final evaluation the weights changed after the last recomputation.
        self.recompute(model, state.global_step)


class TrimFreedMemoryCallback(TrainerCallback):
    """After every optimizer step and evaluation, return the allocator's free pages to the OS
    (`cpu_trim_freed_memory`). Counts its trims in `trims`."""

    def __init__(self):
        self.enabled, self.trims = freed_bytes_held() is not None, 0
        if not self.enabled:
            logger.warning("cpu_trim_freed_memory: needs glibc >= 2.33 (malloc_trim, mallinfo2); not applied")

    def _trim(self) -> None:
        if self.enabled:
            trim_freed_memory()
            self.trims += 1

    def on_step_end(self, args, state, control, **kwargs):
        self._trim()

    def on_evaluate(self, args, state, control, **kwargs):
        self._trim()
