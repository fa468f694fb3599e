"""GPU memory estimate for fine-tuning wav2vec2-large (hf_ser.Wav2Vec2SER, the seed's head) at an effective batch of
16 x 6 s under each memory lever, from a CPU. No GPU is involved: the numbers are an estimate, not a measurement.

Method (every term printed, so the arithmetic can be checked):

    memory = weights + gradients + AdamW states + activations saved for backward

- weights: every parameter in fp32 (4 bytes; bf16 autocast keeps fp32 master weights and casts per op);
- gradients: 4 bytes per *trainable* parameter; AdamW: two fp32 moments, 8 bytes per trainable parameter;
- activations: measured, not modelled. A forward pass on CPU runs under `torch.autograd.graph.saved_tensors_hooks`,
  whose pack hook sees every tensor autograd keeps for backward; the bytes of the unique storages are summed
  (parameters excluded), attributed to the region that was running: the CNN feature encoder, each Transformer layer,
  the rest. The forward runs at batch 1 and batch 2; activations = intercept + slope x batch (the intercept is what does
  not grow with the batch, e.g. bf16 copies of weights that autocast saves), evaluated at the micro-batch.
- gradient checkpointing (transformers checkpoints each Transformer layer; the CNN stays frozen here): each layer then
  keeps only its input; during backward one layer is recomputed at a time, so
  activations = everything outside the layers + sum of layer inputs + the largest single layer's activations.
- bf16: the forward runs under `torch.autocast("cpu", torch.bfloat16)`, so saved tensors have the dtypes autocast gives
  them (CPU autocast's op lists, close to but not identical with CUDA's).

Not included: the CUDA context and allocator fragmentation (typically 0.5-1.5 GiB), transient buffers of backward
(gradients of activations, a few of the largest activation tensors at a time) and the data loader's pinned memory.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_memory_estimate.py --json benchmarks/results/gpu_memory_estimate.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_memory_estimate.py --quick     # tiny encoder, seconds
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass, field

import torch
from common import (
    LEVERS,
    WAV2VEC2_LARGE,
    WAV2VEC2_TINY,
    build_ser_model,
    emit,
    load_average,
    machine_description,
    markdown_table,
    parameter_counts,
    run_worker,
    write_report,
)

GIB = 2**30
CNN, OTHER = "cnn", "other"


@dataclass
class SavedActivations:
    """Bytes autocast/autograd saved for backward during one forward pass, by region."""

    by_region: dict = field(default_factory=dict)
    layer_inputs: int = 0  # bytes of the inputs of the Transformer layers (what checkpointing keeps)
    attention_maps: int = 0  # saved (batch, heads, frames, frames) tensors: what fused GPU attention kernels never keep

    @property
    def layers(self) -> dict:
        return {name: value for name, value in self.by_region.items() if name.startswith("layer")}

    @property
    def total(self) -> int:
        return sum(self.by_region.values())

    def checkpointed(self) -> int:
        outside = self.total - sum(self.layers.values())
        return outside + self.layer_inputs + max(self.layers.values(), default=0)


def _encoder(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.encoder


def saved_activations(model, batch_size: int, samples: int, bf16: bool) -> SavedActivations:
    """One forward pass (loss included) with a pack hook counting the unique storages saved for backward."""
    encoder = _encoder(model)
    region = [OTHER]
    frames = [int(encoder._get_feat_extract_output_lengths(samples))]
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[int, str]] = {}
    result = SavedActivations()

    def pack(tensor):
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in parameter_storages and pointer not in seen:
            seen[pointer] = (storage.nbytes(), region[-1])
            if tensor.dim() == 4 and tensor.shape[-1] == tensor.shape[-2] == frames[0]:
                result.attention_maps += storage.nbytes()
        return tensor

    def enter(name):
        def hook(module, args, kwargs=None):
            region.append(name)
            if name.startswith("layer"):
                result.layer_inputs += args[0].untyped_storage().nbytes() if args else 0

        return hook

    def leave(module, args, output):
        region.pop()

    handles = [
        encoder.feature_extractor.register_forward_pre_hook(enter(CNN)),
        encoder.feature_extractor.register_forward_hook(leave),
    ]
    for index, layer in enumerate(encoder.encoder.layers):
        handles += [layer.register_forward_pre_hook(enter(f"layer{index:02d}")), layer.register_forward_hook(leave)]
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_values": torch.randn(batch_size, samples, generator=generator),
        "attention_mask": torch.ones(batch_size, samples, dtype=torch.long),
        "labels": torch.arange(batch_size) % 4,
    }
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
            loss = model(**inputs).loss  # kept alive until the count is done, so no saved storage is freed and reused
        for size, name in seen.values():
            result.by_region[name] = result.by_region.get(name, 0) + size
        del loss
    finally:
        for handle in handles:
            handle.remove()
    return result


def linear_in_batch(model, samples: int, bf16: bool) -> dict:
    """Activations as intercept + slope x batch, from measurements at batch 1 and 2, without and with checkpointing."""
    one, two = (saved_activations(model, b, samples, bf16) for b in (1, 2))
    fits = {}
    for name, pick in (("plain", lambda a: a.total), ("checkpointed", lambda a: a.checkpointed())):
        slope = pick(two) - pick(one)
        fits[name] = {"batch1": pick(one), "slope": slope, "intercept": pick(one) - slope}
    fits["attention_implementation"] = _encoder(model).config._attn_implementation
    fits["attention_maps"] = {"batch1": one.attention_maps, "slope": two.attention_maps - one.attention_maps}
    fits["batch1_by_region"] = {
        CNN: one.by_region.get(CNN, 0),
        "layers": sum(one.layers.values()),
        "largest_layer": max(one.layers.values(), default=0),
        "layer_inputs": one.layer_inputs,
        OTHER: one.by_region.get(OTHER, 0),
    }
    return fits


# (row name, model lever, bf16 autocast, gradient checkpointing)
ROWS = [
    ("full fine-tuning, fp32", "full", False, False),
    ("frozen CNN, fp32", "frozen_cnn", False, False),
    ("frozen CNN + gradient checkpointing, fp32", "frozen_cnn", False, True),
    ("frozen CNN + bf16 autocast", "frozen_cnn", True, False),
    ("frozen CNN + gradient checkpointing + bf16 autocast", "frozen_cnn", True, True),
    ("LoRA r=8, fp32", "lora", False, False),
    ("LoRA r=8 + bf16 autocast", "lora", True, False),
    ("LoRA r=8 + gradient checkpointing + bf16 autocast", "lora", True, True),
]


def measure(lever: str, bf16: bool, backbone: dict, samples: int) -> dict:
    """Parameter counts and activation fits of one (lever, precision)."""
    model = build_ser_model(lever, backbone)
    total, trainable = parameter_counts(model)
    return {"parameters": total, "trainable": trainable, "fits": linear_in_batch(model, samples, bf16)}


def measure_in_subprocess(lever: str, bf16: bool, backbone: dict, samples: int) -> dict:
    """`measure` in a fresh process: five wav2vec2-large models and their activations in one process would pile up
    (the allocator keeps freed memory), so each gets its own."""
    args = ["--worker", lever, "--seconds", str(samples / 16_000)] + (["--bf16"] if bf16 else [])
    return run_worker(__file__, args + (["--quick"] if backbone is WAV2VEC2_TINY else []))


def estimate(
    backbone: dict, samples: int, effective_batch: int, micro_batches: list[int], measure_fn=measure
) -> list[dict]:
    measured = {}  # (lever, bf16) -> parameter counts and activation fits
    rows = []
    for name, lever, bf16, checkpointing in ROWS:
        if (lever, bf16) not in measured:
            measured[lever, bf16] = measure_fn(lever, bf16, backbone, samples)
        total, trainable, fits = (measured[lever, bf16][key] for key in ("parameters", "trainable", "fits"))
        fit = fits["checkpointed" if checkpointing else "plain"]
        states = {"weights": 4 * total, "gradients": 4 * trainable, "adamw": 8 * trainable}
        # with checkpointing only the layer being recomputed holds its attention maps
        maps_per_example = fits["attention_maps"]["slope"] / (backbone["num_hidden_layers"] if checkpointing else 1)
        for micro in micro_batches:
            activations = fit["intercept"] + fit["slope"] * micro
            fused = activations - maps_per_example * micro
            rows.append(
                {
                    "lever": name,
                    "micro_batch": micro,
                    "accumulation": effective_batch // micro,
                    "parameters": total,
                    "trainable": trainable,
                    **states,
                    "activations": activations,
                    "total": sum(states.values()) + activations,
                    "total_fused_attention": sum(states.values()) + fused,
                    "activation_fit": fits,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--effective_batch", type=int, default=16)
    parser.add_argument(
        "--micro_batches",
        type=int,
        nargs="+",
        default=[16, 4],
        help="Per-device batch sizes (the rest of the effective batch by gradient accumulation).",
    )
    parser.add_argument("--quick", action="store_true", help="Tiny encoder, 1 s clips: a sanity run in seconds.")
    parser.add_argument("--json", help="Write the raw results here.")
    parser.add_argument("--worker", choices=LEVERS, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backbone = WAV2VEC2_TINY if args.quick else WAV2VEC2_LARGE
    if args.quick and not args.worker:
        args.seconds = 1.0
    torch.manual_seed(0)
    if args.worker:
        emit(measure(args.worker, args.bf16, backbone, int(args.seconds * 16_000)))
        return
    rows = estimate(
        backbone, int(args.seconds * 16_000), args.effective_batch, args.micro_batches, measure_fn=measure_in_subprocess
    )
    table = markdown_table(
        [
            "lever",
            "micro-batch x accumulation",
            "weights",
            "gradients",
            "AdamW",
            "activations",
            "total GiB",
            "total GiB, fused attention",
        ],
        [
            [
                r["lever"],
                f"{r['micro_batch']} x {r['accumulation']}",
                *(
                    f"{r[k] / GIB:.2f}"
                    for k in ("weights", "gradients", "adamw", "activations", "total", "total_fused_attention")
                ),
            ]
            for r in rows
        ],
    )
    print(
        f"parameters: {rows[0]['parameters']:,} (LoRA model: {rows[-1]['parameters']:,}, "
        f"{rows[-1]['trainable']:,} trainable)\n"
    )
    print(table)
    write_report(
        args.json,
        {
            "command": "benchmarks/gpu_memory_estimate.py" + (" --quick" if args.quick else ""),
            "machine": machine_description(),
            "seconds": args.seconds,
            "effective_batch": args.effective_batch,
            "backbone": backbone,
            "rows": rows,
            "table": table,
            "load_at_end": load_average(),
        },
    )


if __name__ == "__main__":
    main()
