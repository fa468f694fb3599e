"""Clips per second of the seed's four augmentations (TimeStretch, PitchShift, AddGaussianNoise, TimeMask at p=0.5 each,
exactly as recipes/wav2vec2.yaml lists them) on 6 s clips, through `hf_ser.data.augment` and a torch DataLoader with 0, 1
and 2 workers; then each transform alone (p=1), for both stretch implementations audiomentations offers:
`signalsmith_stretch` (its default since 0.36) and `librosa_phase_vocoder` (the older default).

Clips: EmoDB utterances (../shared/data/emodb) decoded with hf_ser.data.audio.load_audio and repeated to exactly 6 s, so
every sample is speech; without EmoDB, noise-like synthetic clips. Configurations run interleaved (A, B, C, A, B, C),
the table reports medians and the load average.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/augmentation_throughput.py --json benchmarks/results/augmentation_throughput.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/augmentation_throughput.py --quick
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO_ROOT, load_average, machine_description, markdown_table, median, write_report
from torch.utils.data import DataLoader, Dataset

from hf_ser.arguments import load_recipe
from hf_ser.data.audio import load_audio
from hf_ser.data.augment import augment, build_augmenter

SAMPLING_RATE = 16_000
EMODB = REPO_ROOT.parent / "shared" / "data" / "emodb" / "wav"
METHODS = ("signalsmith_stretch", "librosa_phase_vocoder")


def six_second_clips(count: int, seconds: float) -> tuple[list[np.ndarray], str]:
    length = int(seconds * SAMPLING_RATE)
    files = sorted(EMODB.glob("*.wav"))[:count]
    if files:
        return [
            np.resize(load_audio(path), length) for path in files
        ], f"EmoDB ({len(files)} files, repeated to {seconds} s)"
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(length)).astype(np.float32) for _ in range(count)], "synthetic noise"


class AugmentedClips(Dataset):
    """What hf-ser's training transform does per clip after decoding and cropping: `augment` with a keyed generator."""

    def __init__(self, clips: list[np.ndarray], specs: list[dict], items: int):
        self.clips, self.specs, self.items = clips, specs, items
        self.augmenter = build_augmenter(specs)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, index: int) -> torch.Tensor:
        clip = self.clips[index % len(self.clips)]
        return torch.from_numpy(augment(self.augmenter, clip, SAMPLING_RATE, rng=np.random.default_rng([0, index])))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader's workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def clips_per_second(specs: list[dict], clips: list[np.ndarray], items: int, workers: int, batch_size: int):
    """(clips per wall-clock second, CPU seconds per clip) for one pass over `items` augmented clips."""
    loader = DataLoader(AugmentedClips(clips, specs, items), batch_size=batch_size, num_workers=workers)
    cpu_start, start = cpu_seconds(), time.perf_counter()  # worker start-up counts: paid every epoch
    seen = sum(len(batch) for batch in loader)
    del loader
    return seen / (time.perf_counter() - start), (cpu_seconds() - cpu_start) / seen


def with_method(specs: list[dict], method: str) -> list[dict]:
    return [
        dict(spec, method=method) if spec["name"] in ("TimeStretch", "PitchShift") else dict(spec) for spec in specs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO_ROOT / "recipes" / "wav2vec2.yaml"))
    parser.add_argument("--items", type=int, default=192, help="Clips per measurement.")
    parser.add_argument("--alone_items", type=int, default=48, help="Clips per single-transform measurement.")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--quick", action="store_true", help="16 clips, 1 round: a sanity run.")
    parser.add_argument("--json", help="Write the raw results here.")
    args = parser.parse_args()
    if args.quick:
        args.items, args.alone_items, args.repeats = 16, 8, 1
    torch.set_num_threads(1)  # augmentation is NumPy/C++ work; one thread per loader process, as in training
    specs = load_recipe(args.recipe)["augmentations"]
    clips, source = six_second_clips(64, args.seconds)

    pipelines = {f"seed four, p=0.5, {method}": with_method(specs, method) for method in METHODS}
    pipelines["none (decode-free baseline)"] = []
    configurations = [(name, workers) for name in pipelines for workers in args.workers]
    alone = {}
    for spec in specs:
        methods = METHODS if spec["name"] in ("TimeStretch", "PitchShift") else (None,)
        for method in methods:
            single = dict(spec, p=1.0, **({"method": method} if method else {}))
            alone[f"{spec['name']} alone, p=1" + (f", {method}" if method else "")] = [single]

    for specs_to_warm in [*pipelines.values(), *alone.values()]:  # librosa's numba JIT compiles on first use
        clips_per_second(specs_to_warm, clips, 2, 0, 2)
    measurements: dict[str, list] = {}
    for round_index in range(args.repeats):
        for name, workers in configurations:
            load = load_average()[0]
            rate, cpu = clips_per_second(pipelines[name], clips, args.items, workers, args.batch_size)
            measurements.setdefault(f"{name}|{workers}", []).append((rate, cpu, load))
            print(
                f"[round {round_index + 1}] {name}, {workers} worker(s): {rate:.1f} clips/s, {cpu:.4f} CPU s/clip "
                f"(load {load})",
                flush=True,
            )
        for name, single in alone.items():
            load = load_average()[0]
            rate, cpu = clips_per_second(single, clips, args.alone_items, 0, args.batch_size)
            measurements.setdefault(f"{name}|0", []).append((rate, cpu, load))
            print(
                f"[round {round_index + 1}] {name}: {rate:.1f} clips/s, {cpu:.4f} CPU s/clip (load {load})", flush=True
            )

    rows = []
    for key, values in measurements.items():
        name, workers = key.split("|")
        rates, cpus, loads = zip(*values)
        # CPU time per clip is what a core spends on one clip: 1 / it is the rate of one otherwise idle core
        rows.append(
            [
                name,
                workers,
                f"{median(rates):.1f}",
                " / ".join(f"{r:.1f}" for r in rates),
                f"{median(cpus) * 1000:.1f}",
                f"{1 / median(cpus):.0f}",
                f"{min(loads):.1f}-{max(loads):.1f}",
            ]
        )
    table = markdown_table(
        [
            "augmentation",
            "loader workers",
            "clips/s (median, wall)",
            "per round",
            "CPU ms/clip (median)",
            "clips/s per idle core",
            "load avg (1 min)",
        ],
        rows,
    )
    print(f"\nclips: {source}\n{table}")
    write_report(
        args.json,
        {
            "command": "benchmarks/augmentation_throughput.py" + (" --quick" if args.quick else ""),
            "machine": machine_description(),
            "clips": source,
            "recipe": str(Path(args.recipe).name),
            "specs": specs,
            "measurements": measurements,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
