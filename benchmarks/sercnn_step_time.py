"""Seconds per SERCNN training step (forward + backward + AdamW) on random 2 s windows, the Base recipe's shape.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/sercnn_step_time.py --batch-size 128 --steps 6

Prints the median of the timed steps (the first, warm-up step is not counted). To compare two versions of the model,
run the script with PYTHONPATH pointing at each checkout (e.g. a `git worktree` of the older commit).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import hf_ser
from hf_ser import SERCNN, SERCNNConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SERCNN(SERCNNConfig(num_labels=7)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    samples = round(args.seconds * 16000)
    waveforms = torch.randn(args.batch_size, samples)
    mask = torch.ones(args.batch_size, samples, dtype=torch.long)
    mask[: args.batch_size // 4, samples // 2 :] = 0  # a quarter of the windows padded, as short clips are
    labels = torch.randint(0, 7, (args.batch_size,))
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        model(waveforms, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    print(
        f"hf_ser from {hf_ser.__file__}: {torch.get_num_threads()} threads, batch {args.batch_size} x "
        f"{args.seconds:g} s, median step {statistics.median(times[1:]):.2f} s over {args.steps} steps"
    )


if __name__ == "__main__":
    main()
