"""GPU check: measured memory and speed of fine-tuning wav2vec2-large at micro-batch 16 x 6 s, next to the CPU estimate.

For the wav2vec2-large architecture (benchmarks/common.py WAV2VEC2_LARGE, random weights) with the seed's head, each
lever trains a few AdamW steps on random 6 s waveforms, in its own process (so each peak is its own):

    full           full fine-tuning, fp32 (conv feature encoder trained too)
    frozen_cnn     hf-ser's default: conv feature encoder frozen, fp32
    frozen_cnn_gc  + gradient checkpointing
    frozen_cnn_gc_bf16  + bf16 autocast
    lora           LoRA r=8 on attention (the recipe's `peft:` section), fp32

Recorded per lever: peak `torch.cuda.max_memory_allocated` over the timed steps, seconds per step (median) and samples
per second, next to the row of `benchmarks/results/gpu_memory_estimate.json` that predicts it. Results go to
`benchmarks/results/gpu_check.json` and a Markdown table on stdout.

    python benchmarks/gpu_check.py --json benchmarks/results/gpu_check.json     # on a GPU machine
    python benchmarks/gpu_check.py --quick --device cpu                         # tiny encoder: checks the script

`--fsdp` (2+ GPUs) checks FSDP instead, which cannot run on CPU processes (docs/scaling.md, "FSDP"): it runs the
sharded-engine tests of tests/training/test_distributed_engines.py for `accelerate_configs/fsdp.yaml` on 2 GPUs
(train with sharded weights, results written once, checkpoints that reload as plain models with the in-training
logits, a SIGKILLed run that resumes to the uninterrupted losses), and prints pytest's report.

    python benchmarks/gpu_check.py --fsdp
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    REPO_ROOT,
    WAV2VEC2_LARGE,
    WAV2VEC2_TINY,
    build_ser_model,
    emit,
    machine_description,
    markdown_table,
    run_worker,
    write_report,
)

LEVERS = {  # lever -> (build_ser_model lever, bf16 autocast, estimate row name)
    "full": ("full", False, "full fine-tuning, fp32"),
    "frozen_cnn": ("frozen_cnn", False, "frozen CNN, fp32"),
    "frozen_cnn_gc": ("frozen_cnn_gc", False, "frozen CNN + gradient checkpointing, fp32"),
    "frozen_cnn_gc_bf16": ("frozen_cnn_gc", True, "frozen CNN + gradient checkpointing + bf16 autocast"),
    "lora": ("lora", False, "LoRA r=8, fp32"),
}
ESTIMATE_FILE = REPO_ROOT / "benchmarks" / "results" / "gpu_memory_estimate.json"


def train_steps(lever: str, device: str, batch: int, seconds: float, steps: int, quick: bool) -> dict:
    import torch

    base_lever, bf16, _ = LEVERS[lever]
    model = build_ser_model(base_lever, WAV2VEC2_TINY if quick else WAV2VEC2_LARGE).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch, int(seconds * 16000), generator=generator)).to(device)
    labels = torch.randint(0, 4, (batch,), generator=generator).to(device)
    cuda = device.startswith("cuda")

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_values=audio, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up: kernels chosen, optimizer states allocated
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(steps)]
    per_step = statistics.median(times)
    return {
        "lever": lever,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "seconds_per_step": per_step,
        "samples_per_second": batch / per_step,
        "device": torch.cuda.get_device_name() if cuda else device,
    }


FSDP_TESTS = REPO_ROOT / "tests" / "training" / "test_distributed_engines.py"


def check_fsdp() -> int:
    """pytest's exit status for the fsdp.yaml runs of the sharded-engine tests (collected only with 2+ GPUs)."""
    import torch

    if torch.cuda.device_count() < 2:
        print(f"--fsdp needs 2 GPUs; this machine has {torch.cuda.device_count()}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "--durations=0", str(FSDP_TESTS), "-k", "fsdp and yaml"]
    return subprocess.call(command, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def estimates(batch: int) -> dict[str, float]:
    if not ESTIMATE_FILE.is_file():
        return {}
    rows = json.loads(ESTIMATE_FILE.read_text())["rows"]
    return {
        row["lever"]: row["total"] / 2**30 for row in rows if row["micro_batch"] == batch and row["accumulation"] == 1
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--quick", action="store_true", help="tiny encoder, 2 x 1 s, 2 steps: checks the script")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--fsdp", action="store_true", help="check accelerate_configs/fsdp.yaml on 2 GPUs instead")
    parser.add_argument("--worker", choices=list(LEVERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fsdp:
        sys.exit(check_fsdp())
    if args.quick:
        args.batch, args.seconds, args.steps = 2, 1.0, 2
    if args.worker:
        emit(train_steps(args.worker, args.device, args.batch, args.seconds, args.steps, args.quick))
        return

    passthrough = [
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--seconds",
        str(args.seconds),
        "--steps",
        str(args.steps),
    ] + (["--quick"] if args.quick else [])
    predicted = estimates(args.batch) if not args.quick else {}
    results = []
    for lever in args.levers:
        result = run_worker(Path(__file__), ["--worker", lever, *passthrough])
        result["estimate_gib"] = predicted.get(LEVERS[lever][2])
        results.append(result)
    rows = [
        [
            r["lever"],
            "-" if r["peak_allocated_gib"] is None else f"{r['peak_allocated_gib']:.2f}",
            "-" if r["estimate_gib"] is None else f"{r['estimate_gib']:.2f}",
            f"{r['seconds_per_step']:.3f}",
            f"{r['samples_per_second']:.1f}",
        ]
        for r in results
    ]
    print(
        f"wav2vec2-large{' (tiny, --quick)' if args.quick else ''}, micro-batch {args.batch} x {args.seconds:g} s, "
        f"{args.device}"
    )
    print(markdown_table(["lever", "peak allocated GiB", "CPU estimate GiB", "s / step", "samples / s"], rows))
    write_report(
        args.json,
        {
            "batch": args.batch,
            "seconds": args.seconds,
            "steps": args.steps,
            "quick": args.quick,
            "results": results,
            "machine": machine_description(),
        },
    )


if __name__ == "__main__":
    main()
