"""CPU inference speed of the PyTorch and ONNX Runtime backends of `hf-ser predict`, as a real-time factor.

    HF_HUB_OFFLINE=1 python benchmarks/inference_speed.py --threads 1 --repeats 7

RTF = processing seconds / audio seconds (below 1 is faster than real time), batch 1, for:
  * SERCNN with its default ("Base" CNN) config: about 172k parameters;
  * Wav2Vec2SER around a wav2vec2-base-sized encoder (`transformers.Wav2Vec2Config()` defaults: 12 layers, hidden 768)
    with the seed's head (512, 256), random weights: speed does not depend on the weights' values.
Timed: `EmotionClassifier.logits` on one waveform (feature extractor + padding + forward), the work `predict` does per
batch after decoding. Each cell is the median of `--repeats` runs after one warm-up run. Results and the command go to
benchmarks/results/inference_speed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

import hf_ser
from hf_ser import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.data.demo_corpus import synthesize
from hf_ser.inference.onnx_export import export_onnx
from hf_ser.inference.predict import EmotionClassifier

LABELS = ["angry", "happy", "neutral", "sad"]
SR = 16_000


def build_models() -> dict:
    label_maps = dict(id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(0)
    return {
        "SERCNN (default config)": (
            SERCNN(SERCNNConfig(**label_maps)),
            Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True),
        ),
        "Wav2Vec2SER, wav2vec2-base size": (
            Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=Wav2Vec2Config().to_dict(), **label_maps)),
            Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True),
        ),
    }


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * SR:
        piece = synthesize(LABELS[len(pieces) % 4], 150.0, (600.0, 1500.0), rng)
        pieces.append(piece)
        total += len(piece)
    return np.concatenate(pieces)[: int(seconds * SR)]


def time_backend(classifier: EmotionClassifier, waveform: np.ndarray, repeats: int) -> list[float]:
    classifier.logits([waveform])  # warm-up: allocations, ONNX Runtime's first-run optimisation
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.logits([waveform])
        timings.append(time.perf_counter() - start)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both backends (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per cell; the median is reported")
    parser.add_argument("--durations", type=float, nargs="+", default=[6.0, 30.0], help="input lengths in seconds")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "inference_speed.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    rows, notes = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for index, (name, (model, extractor)) in enumerate(build_models().items()):
            model_dir, onnx_dir = Path(workdir) / f"m{index}", Path(workdir) / f"m{index}-onnx"
            model.eval().save_pretrained(model_dir)
            extractor.save_pretrained(model_dir)
            start = time.perf_counter()
            info = export_onnx(model_dir, onnx_dir)
            parameters = sum(p.numel() for p in model.parameters())
            notes.append(
                f"{name}: {parameters / 1e6:.2f} M parameters; ONNX export {time.perf_counter() - start:.0f} s, "
                f"parity max |logits diff| {info['parity']['max_abs_diff']:.1e}"
            )
            backends = {
                "torch": EmotionClassifier(model_dir),
                "onnx": EmotionClassifier(onnx_dir, backend="onnx", threads=args.threads),
            }
            for seconds in args.durations:
                waveform = speech_like(seconds)
                for backend, classifier in backends.items():
                    timings = time_backend(classifier, waveform, args.repeats)
                    median = statistics.median(timings)
                    rows.append(
                        (
                            name,
                            seconds,
                            backend,
                            median / seconds,
                            min(timings) / seconds,
                            max(timings) / seconds,
                            median,
                        )
                    )
                    print(f"{name:34s} {seconds:5.1f} s {backend:5s} RTF {median / seconds:.4f}", flush=True)

    load_after = os.getloadavg()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/inference_speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# Inference speed on CPU: real-time factor (RTF)",
        "",
        f"Command: `{command.strip()}`",
        "",
        "RTF = processing seconds / audio seconds (lower is faster; 0.1 = ten times faster than real time). Batch 1, "
        f"{args.threads} intra-op thread(s) for both backends; timed: feature extractor + padding + forward "
        "(`EmotionClassifier.logits`), not decoding. Median of "
        f"{args.repeats} runs after one warm-up; min and max show the spread.",
        "",
        f"Machine: {cpu}, {os.cpu_count()} logical CPUs **shared with other jobs** (load average "
        f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end), so absolute numbers are pessimistic "
        "and noisy; the torch/onnx ratio on the same row pair is the more stable reading.",
        f"Software: Python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, onnxruntime {__import__('onnxruntime').__version__}, hf-ser {hf_ser.__version__}.",
        "Weights are random (speed does not depend on their values).",
        "",
        "| model | audio (s) | backend | RTF median | RTF min | RTF max | seconds per call (median) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {seconds:g} | {backend} | {rtf:.4f} | {low:.4f} | {high:.4f} | {median:.3f} |"
        for name, seconds, backend, rtf, low, high, median in rows
    ]
    lines += ["", *[f"- {note}" for note in notes], ""]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
