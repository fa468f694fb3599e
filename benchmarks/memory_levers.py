"""Seconds per training step and peak RSS of wav2vec2-large (random weights, the published architecture) inside
hf_ser.Wav2Vec2SER with the seed's head, on this CPU, under each memory lever: full fine-tuning, frozen CNN feature
encoder, frozen CNN + gradient checkpointing, LoRA (r=8 on q/k/v/out_proj).

A step is forward + backward + AdamW step on a batch of 2 x 6 s (96,000 samples). Each run is its own process (so its
peak RSS is its own): build the model, one warm-up step, then `--steps` timed steps. Levers run interleaved
(A, B, C, D, A, B, C, D, ...) `--repeats` times; the table reports medians.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_levers.py --repeats 2 --steps 2 --json benchmarks/results/memory_levers.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_levers.py --quick     # tiny encoder, seconds
"""

from __future__ import annotations

import argparse
import time

from common import (
    LEVERS,
    WAV2VEC2_LARGE,
    WAV2VEC2_TINY,
    build_ser_model,
    emit,
    interleaved,
    load_average,
    machine_description,
    markdown_table,
    median,
    parameter_counts,
    peak_rss_mib,
    run_worker,
    write_report,
)


def measure(lever: str, backbone: dict, batch_size: int, samples: int, steps: int) -> dict:
    import torch

    model = build_ser_model(lever, backbone)
    total, trainable = parameter_counts(model)
    rss_model = peak_rss_mib()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_values": torch.randn(batch_size, samples, generator=generator),
        "attention_mask": torch.ones(batch_size, samples, dtype=torch.long),
        "labels": torch.arange(batch_size) % 4,
    }
    times = []
    for step in range(steps + 1):  # step 0 warms up (allocator, AdamW state creation)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{lever}: the loss is not finite ({loss.item()})")
    return {
        "lever": lever,
        "parameters": total,
        "trainable": trainable,
        "step_seconds": times,
        "rss_after_model_mib": round(rss_model, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS)
    parser.add_argument("--repeats", type=int, default=2, help="Interleaved rounds (one process per lever per round).")
    parser.add_argument("--steps", type=int, default=2, help="Timed steps per run, after one warm-up step.")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0, help="Clip length (16 kHz).")
    parser.add_argument("--quick", action="store_true", help="Tiny encoder, 1 s clips, 1 round: a sanity run.")
    parser.add_argument("--json", help="Write the raw results here.")
    parser.add_argument("--worker", choices=LEVERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    backbone = WAV2VEC2_TINY if args.quick else WAV2VEC2_LARGE
    if args.quick:
        args.seconds, args.repeats, args.steps = 1.0, 1, 1
    samples = int(args.seconds * 16_000)
    if args.worker:
        emit(measure(args.worker, backbone, args.batch_size, samples, args.steps))
        return

    worker_args = ["--batch_size", str(args.batch_size), "--seconds", str(args.seconds), "--steps", str(args.steps)]
    worker_args += ["--quick"] if args.quick else []
    results = interleaved(
        args.levers, args.repeats, lambda lever: run_worker(__file__, worker_args + ["--worker", lever])
    )
    rows = []
    for lever, runs in results.items():
        step_medians = [median(run["step_seconds"]) for run in runs]
        loads = [run["load_before"][0] for run in runs] + [run["load_after"][0] for run in runs]
        rows.append(
            [
                lever,
                f"{runs[0]['parameters']:,}",
                f"{runs[0]['trainable']:,}",
                f"{median(step_medians):.2f}",
                " / ".join(f"{value:.2f}" for value in step_medians),
                f"{median(r['peak_rss_mib'] for r in runs) / 1024:.2f}",
                f"{min(loads):.1f}-{max(loads):.1f}",
            ]
        )
    table = markdown_table(
        [
            "lever",
            "parameters",
            "trainable",
            "s/step (median)",
            "per-run medians",
            "peak RSS GiB (median)",
            "load avg (1 min)",
        ],
        rows,
    )
    print(table)
    write_report(
        args.json,
        {
            "command": "benchmarks/memory_levers.py "
            + " ".join(
                a for a in ["--quick" if args.quick else "", f"--repeats {args.repeats}", f"--steps {args.steps}"] if a
            ),
            "machine": machine_description(),
            "batch_size": args.batch_size,
            "samples": samples,
            "backbone": backbone,
            "results": results,
            "table": table,
            "load_at_end": load_average(),
        },
    )


if __name__ == "__main__":
    main()
