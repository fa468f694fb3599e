"""Clips per second of the seed's four augmentations (TimeStretch, PitchShift, AddGaussianNoise, TimeMask at p=0.5 each,
exactly as recipes/wav2vec2.yaml lists them) on 6 s clips, against hf-ser's cheaper paths, in the same run:

- `seed`: the recipe's list as it is (audiomentations' default `signalsmith_stretch` for TimeStretch and PitchShift);
- `fast_phase_vocoder` / `soxr_speed`: the same list with TimeStretch and PitchShift on that `method`
  (hf_ser.data.tempo_pitch);
- `... + batch noise/mask`: TimeStretch and PitchShift per clip as above, noise and time masking moved to the collated
  batch (`batch_augmentations`: AddGaussianSNR and TimeMask at p=0.5, hf_ser.data.batch_augment), applied in the main
  process on `--device` as SERTrainer applies them (every pipeline's batches go to `--device`; with the default `cpu`
  the "device" is the same cores the loader uses);
- `none`: decoding-free loader overhead only.

Every clip goes through `hf_ser.data.augment` with a keyed generator and a torch DataLoader (batch 16, 2 workers by
default), as training does. Configurations run interleaved (A, B, C, A, B, C, ...); the table reports medians, the
ratio to `seed`, CPU time per clip and the 1-minute load average before and after each measurement and the run.
Clips: EmoDB utterances (../shared/data/emodb) repeated to exactly 6 s, so every sample is speech; without EmoDB,
noise-like synthetic clips.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/augmentation_throughput.py --json benchmarks/results/augmentation_throughput_fast.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/augmentation_throughput.py --quick
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/augmentation_throughput.py --workers 0 1 2 --alone  # + each transform alone
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/augmentation_throughput.py --device cuda --workers 2 8  # on a GPU machine
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
from hf_ser.data.batch_augment import build_batch_augmenter

SAMPLING_RATE = 16_000
EMODB = REPO_ROOT.parent / "shared" / "data" / "emodb" / "wav"
STRETCHES = ("TimeStretch", "PitchShift")
METHODS = ("signalsmith_stretch", "librosa_phase_vocoder", "fast_phase_vocoder", "soxr_speed")
# What replaces the per-clip AddGaussianNoise and TimeMask in the `+ batch noise/mask` pipelines.
BATCH_NOISE_AND_MASK = [
    {"name": "AddGaussianSNR", "p": 0.5, "min_snr_db": 15.0, "max_snr_db": 40.0},
    {"name": "TimeMask", "p": 0.5, "min_band_part": 0.0, "max_band_part": 0.1},
]


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


def clips_per_second(
    pipeline: dict, clips: list[np.ndarray], items: int, workers: int, batch_size: int, device: str = "cpu"
):
    """(clips per wall-clock second, CPU seconds per clip) for one pass over `items` augmented clips, each collated
    batch moved to `device` and given the pipeline's batch transforms there, in this process."""
    loader = DataLoader(AugmentedClips(clips, pipeline["clip"], items), batch_size=batch_size, num_workers=workers)
    batch_augmenter = build_batch_augmenter(pipeline["batch"])
    cpu_start, start = cpu_seconds(), time.perf_counter()  # worker start-up counts: paid every epoch
    seen = 0
    for step, values in enumerate(loader):
        values = values.to(device)
        if batch_augmenter is not None:  # 6 s clips: every sample is real
            batch = {"input_values": values, "attention_mask": torch.ones_like(values, dtype=torch.long)}
            values = batch_augmenter(batch, batch_augmenter.generator(values.device, 0, step, 0))["input_values"]
        seen += len(values)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    del loader
    return seen / (time.perf_counter() - start), (cpu_seconds() - cpu_start) / seen


def with_method(specs: list[dict], method: str) -> list[dict]:
    return [dict(spec, method=method) if spec["name"] in STRETCHES else dict(spec) for spec in specs]


def pipelines_of(specs: list[dict]) -> dict[str, dict]:
    """The measured configurations: per-clip specs and batch specs."""
    stretches_only = [spec for spec in specs if spec["name"] in STRETCHES]
    pipelines = {"seed": {"clip": specs, "batch": []}}
    for method in ("fast_phase_vocoder", "soxr_speed"):
        pipelines[method] = {"clip": with_method(specs, method), "batch": []}
    for method in ("fast_phase_vocoder", "soxr_speed"):
        pipelines[f"{method} + batch noise/mask"] = {
            "clip": with_method(stretches_only, method),
            "batch": BATCH_NOISE_AND_MASK,
        }
    pipelines["none (loader overhead only)"] = {"clip": [], "batch": []}
    return pipelines


def alone_pipelines(specs: list[dict]) -> dict[str, dict]:
    """Each transform alone at p=1 (TimeStretch and PitchShift once per method)."""
    alone = {}
    for spec in specs:
        for method in METHODS if spec["name"] in STRETCHES else (None,):
            single = dict(spec, p=1.0, **({"method": method} if method else {}))
            alone[f"{spec['name']} alone, p=1" + (f", {method}" if method else "")] = {"clip": [single], "batch": []}
    return alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO_ROOT / "recipes" / "wav2vec2.yaml"))
    parser.add_argument("--items", type=int, default=128, help="Clips per measurement.")
    parser.add_argument("--alone_items", type=int, default=48, help="Clips per single-transform measurement.")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument(
        "--device", default="cpu", help="Where collated batches go and batch transforms run (cuda on a GPU machine)."
    )
    parser.add_argument("--alone", action="store_true", help="Also each transform alone (p=1, 0 workers).")
    parser.add_argument("--quick", action="store_true", help="16 clips, 1 round: a sanity run.")
    parser.add_argument("--json", help="Write the raw results here.")
    args = parser.parse_args()
    if args.quick:
        args.items, args.alone_items, args.repeats = 16, 8, 1
    torch.set_num_threads(1)  # augmentation is NumPy/C++ work; one thread per loader process, as in training
    specs = load_recipe(args.recipe)["augmentations"]
    clips, source = six_second_clips(64, args.seconds)

    pipelines = pipelines_of(specs)
    configurations = [(name, workers) for name in pipelines for workers in args.workers]
    alone = alone_pipelines(specs) if args.alone else {}
    load_at_start = load_average()
    for pipeline in [*pipelines.values(), *alone.values()]:  # warm-up: librosa's numba JIT compiles on first use
        clips_per_second(pipeline, clips, 2, 0, 2, args.device)
    measurements: dict[str, list] = {}

    def measure(key: str, label: str, pipeline: dict, items: int, workers: int, round_index: int) -> None:
        load_before = load_average()[0]
        rate, cpu = clips_per_second(pipeline, clips, items, workers, args.batch_size, args.device)
        load_after = load_average()[0]
        measurements.setdefault(key, []).append((rate, cpu, load_before, load_after))
        print(
            f"[round {round_index + 1}] {label}: {rate:.1f} clips/s, {cpu * 1000:.1f} CPU ms/clip "
            f"(load {load_before} -> {load_after})",
            flush=True,
        )

    for round_index in range(args.repeats):
        for name, workers in configurations:
            measure(
                f"{name}|{workers}", f"{name}, {workers} worker(s)", pipelines[name], args.items, workers, round_index
            )
        for name, pipeline in alone.items():
            measure(f"{name}|0", name, pipeline, args.alone_items, 0, round_index)
    load_at_end = load_average()

    seed_rate = {
        workers: median(r for r, *_ in measurements[f"seed|{workers}"]) for workers in args.workers
    }  # the baseline of each worker count, from this run
    rows = []
    for key, values in measurements.items():
        name, workers = key.split("|")
        rates, cpus, before, after = zip(*values)
        baseline = seed_rate.get(int(workers))
        rows.append(
            [
                name,
                workers,
                f"{median(rates):.1f}",
                f"{median(rates) / baseline:.2f}x" if baseline and name in pipelines else "",
                " / ".join(f"{r:.1f}" for r in rates),
                f"{median(cpus) * 1000:.1f}",
                f"{1 / median(cpus):.0f}",
                f"{min(before + after):.1f}-{max(before + after):.1f}",
            ]
        )
    table = markdown_table(
        [
            "augmentation",
            "loader workers",
            "clips/s (median, wall)",
            "vs seed",
            "per round",
            "CPU ms/clip (median)",
            "clips/s per idle core",
            "load avg (1 min) before-after",
        ],
        rows,
    )
    load_line = f"load average (1, 5, 15 min): {load_at_start} at the start, {load_at_end} at the end"
    print(f"\nclips: {source}\n{load_line}\n{table}")
    write_report(
        args.json,
        {
            "command": "benchmarks/augmentation_throughput.py" + (" --quick" if args.quick else ""),
            "arguments": vars(args),
            "machine": machine_description(),
            "clips": source,
            "recipe": str(Path(args.recipe).name),
            "pipelines": {**pipelines, **alone},
            "load_at_start": load_at_start,
            "load_at_end": load_at_end,
            "measurements": measurements,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
