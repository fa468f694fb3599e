"""What changes when the Trainer runs on several processes (DDP, DeepSpeed, FSDP): see docs/scaling.md.

- `accelerate launch --multi_gpu` on a machine without GPUs starts several CPU processes; transformers then sets up
  no data parallelism at all unless `use_cpu` is on, and every process trains its own copy on all the data.
  `hf_ser.arguments.cpu_processes_launched` finds that case so `SERTrainingArguments` can switch to CPU data
  parallelism (gloo).
- BatchNorm in the seed's head normalises over the local batch; `sync_batch_norm` makes it the global batch.
- wav2vec2's LayerDrop skips random layers per process, which DDP cannot reduce when activation checkpointing is on
  (or `ddp_find_unused_parameters: false`): it is switched off there (transformers#30113).
- Under DeepSpeed ZeRO-3, transformers builds every `from_config` model inside `deepspeed.zero.Init`, and its ZeRO-3
  weight initialisation cannot reach wav2vec2's weight-normed positional convolution (its weights live two modules
  down, in `conv.parametrizations.weight`): construction fails with an IndexError. `weights_built_whole` builds the
  model with full weights instead; DeepSpeed partitions it when the Trainer prepares it.
- DeepSpeed on CPU processes JIT-compiles a shared-memory all-reduce op when it sets up communication (minutes, and a
  run killed meanwhile leaves a lock that blocks the next one); only DeepSpeed's tensor-parallel *inference* uses that
  op, so `skip_deepspeed_cpu_inference_op` declines it for training.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from torch import nn
from transformers import PreTrainedModel, TrainingArguments

from hf_ser.training.callbacks import batch_norm_layers

logger = logging.getLogger(__name__)

LAYERDROP_KEYS = ("layerdrop", "encoder_layerdrop")  # wav2vec2 / HuBERT / WavLM, Whisper


def _encoder_configs(model: nn.Module) -> list:
    """The encoder config objects whose LayerDrop the forward pass reads (one object may be shared)."""
    configs = []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None:
            continue
        candidates = [config, getattr(config, "backbone_config", None)]
        for candidate in candidates:
            if candidate is not None and any(hasattr(candidate, key) for key in LAYERDROP_KEYS):
                if all(candidate is not seen for seen in configs):
                    configs.append(candidate)
    return configs


def disable_layerdrop(model: nn.Module) -> list[str]:
    """Set every LayerDrop probability in the model's (encoder) configs to 0; returns what was changed."""
    changed = []
    for config in _encoder_configs(model):
        for key in LAYERDROP_KEYS:
            value = getattr(config, key, None)
            if value:
                setattr(config, key, 0.0)
                changed.append(f"{type(config).__name__}.{key}={value}")
    return changed


@contextmanager
def weights_built_whole(args: TrainingArguments):
    """Build models inside this block with full (unpartitioned) weights even when DeepSpeed ZeRO-3 is on.

    Costs the model's full size in host memory per process at start-up (1.3 GB for wav2vec2-large in fp32), which
    is what ZeRO-3's construction-time partitioning would save; the rest of ZeRO-3 (sharded weights, gradients and
    optimizer states during training, a gathered model.safetensors at the end) is unchanged.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled, set_hf_deepspeed_config, unset_hf_deepspeed_config

    if not is_deepspeed_zero3_enabled():
        yield
        return
    # the object transformers' ZeRO-3 switch points to: from `deepspeed: ds.json`, or from an accelerate config
    holder = getattr(args, "hf_deepspeed_config", None) or getattr(
        getattr(args, "deepspeed_plugin", None), "dschf", None
    )
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if holder is not None:
            set_hf_deepspeed_config(holder)


DEEPSPEED_CPU_INFERENCE_OP = "deepspeed_shm_comm"  # ShareMemCommBuilder: serves only `inference_all_reduce`


def skip_deepspeed_cpu_inference_op(args: TrainingArguments) -> bool:
    """Under DeepSpeed on CPU processes, mark DeepSpeed's shared-memory all-reduce op as unavailable, so that setting up
    communication does not JIT-compile it; returns whether it was skipped.

    DeepSpeed builds the op in `deepspeed.comm.TorchBackend` whenever its compatibility probe
    (`deepspeed.ops.__compatible_ops__`, a dict DeepSpeed keeps for the process) says it could, and uses it only in
    `inference_all_reduce` (tensor-parallel inference). Training all-reduces through torch.distributed (gloo) either way.
    """
    uses_deepspeed = bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if not (uses_deepspeed and args.world_size > 1 and args.device.type == "cpu"):
        return False
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[DEEPSPEED_CPU_INFERENCE_OP] = False
    return True


def prepare_model_for_processes(model: PreTrainedModel, args: TrainingArguments) -> PreTrainedModel:
    """Adapt the model to a multi-process run before the Trainer wraps it; a single process gets it unchanged.

    - LayerDrop off when ranks could skip different layers under DDP with activation checkpointing (or without
      unused-parameter detection), which fails in the backward pass (transformers#30113).
    - `sync_batch_norm`: every BatchNorm becomes `torch.nn.SyncBatchNorm` (statistics over the global batch). The
      state dict keeps its keys, so checkpoints load into the plain model. torch implements SyncBatchNorm for GPUs
      only: on CPU processes this is refused.
    """
    if args.world_size <= 1:
        return model
    strict_ddp = args.activation_checkpointing or args.ddp_find_unused_parameters is False
    if strict_ddp:
        changed = disable_layerdrop(model)
        if changed:
            reason = "activation checkpointing" if args.activation_checkpointing else "ddp_find_unused_parameters=false"
            logger.warning(
                "LayerDrop switched off (%s): with %d processes and %s, ranks would skip different layers and DDP "
                "fails in the backward pass (transformers#30113)",
                ", ".join(changed),
                args.world_size,
                reason,
            )
    if getattr(args, "sync_batch_norm", False):
        if not batch_norm_layers(model, running_stats_only=False):
            logger.warning("sync_batch_norm is on but the model has no BatchNorm layer: nothing to synchronise")
        elif args.device.type == "cpu":
            raise ValueError(
                "sync_batch_norm: torch's SyncBatchNorm runs on GPUs only, and these processes train on CPU; "
                "set sync_batch_norm: false (each process then normalises over its own batch) or head_batch_norm: false"
            )
        else:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            logger.info("BatchNorm layers converted to SyncBatchNorm across %d processes", args.world_size)
    return model
