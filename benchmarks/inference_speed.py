"""CPU inference speed of the PyTorch and ONNX Runtime backends of `hf-ser predict`, fp32 and int8, as a real-time factor.

    HF_HUB_OFFLINE=1 python benchmarks/inference_speed.py --threads 2 --repeats 5

RTF = processing seconds / audio seconds (below 1 is faster than real time), batch 1, for:
  * SERCNN with its default ("Base" CNN) config: about 172k parameters;
  * Wav2Vec2SER around a wav2vec2-base-sized encoder (`transformers.Wav2Vec2Config()` defaults: 12 layers, hidden 768)
    with the seed's head (512, 256), random weights: speed does not depend on the weights' values.
Backends: torch (fp32), onnx (the fp32 export), onnx-int8 (as `hf-ser export-onnx --quantize int8` makes it: the
export with a wav2vec2 feature encoder's strided convolutions as MatMuls, quantised by `hf_ser.inference.quantization`;
the int8-vs-fp32 parity is against that export). Timed: `EmotionClassifier.logits` on one waveform (feature extractor +
padding + forward), the work `predict` does per batch after decoding. Each cell is the median of `--repeats` runs after
one warm-up run; the ratio column divides by torch's median on the same model and length, measured in the same run
(the backends alternate within each cell's model). The quantisation's parity report (top labels of int8 vs fp32,
largest probability difference) is run on `--parity-dir` (EmoDB's 535 files by default). Results and the command go to
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
from hf_ser.inference.predict import EmotionClassifier, find_audio_files
from hf_ser.inference.quantization import quantize_export

LABELS = ["angry", "happy", "neutral", "sad"]
SR = 16_000
EMODB_WAV = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb" / "wav"


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


def time_backends(backends: dict, waveform: np.ndarray, repeats: int) -> dict[str, list[float]]:
    """Seconds per `logits` call of each backend, the backends taking turns (A, B, C, A, B, C, ...) so that a change
    of load on the shared machine hits them alike; one warm-up call each first (allocations, ONNX Runtime's first-run
    optimisation)."""
    for classifier in backends.values():
        classifier.logits([waveform])
    timings = {backend: [] for backend in backends}
    for _ in range(repeats):
        for backend, classifier in backends.items():
            start = time.perf_counter()
            classifier.logits([waveform])
            timings[backend].append(time.perf_counter() - start)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both backends (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per cell; the median is reported")
    parser.add_argument("--durations", type=float, nargs="+", default=[6.0, 30.0], help="input lengths in seconds")
    parser.add_argument("--parity-dir", default=str(EMODB_WAV), help="audio for the int8-vs-fp32 parity report")
    parser.add_argument(
        "--parity-files", type=int, help="only this many of those files, evenly spaced in name order (default: all)"
    )
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "inference_speed.md"))
    args = parser.parse_args(argv)
    parity_files, _ = find_audio_files([args.parity_dir])
    if args.parity_files:
        parity_files = parity_files[:: max(1, len(parity_files) // args.parity_files)][: args.parity_files]
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
            export_seconds = time.perf_counter() - start
            parameters = sum(p.numel() for p in model.parameters())
            int8_dir, int8_source = Path(workdir) / f"m{index}-int8", Path(workdir) / f"m{index}-int8-source"
            # what `export-onnx --quantize int8` quantises: the export with the feature encoder's convolutions as MatMuls
            export_onnx(model_dir, int8_source, verify=False, convolutions_as_matmuls=True)
            audio = f"{len(parity_files)} files of {args.parity_dir}"
            report = quantize_export(int8_source, int8_dir, parity_files, audio, threads=args.threads)
            notes.append(
                f"{name}: {parameters / 1e6:.2f} M parameters; ONNX export {export_seconds:.0f} s, "
                f"parity max |logits diff| {info['parity']['max_abs_diff']:.1e}; int8 "
                f"{report['int8_bytes'] / 2**20:.1f} MiB (fp32 {report['fp32_bytes'] / 2**20:.1f} MiB), on "
                f"{audio}: {report['identical_top_labels']} top labels as fp32 "
                f"({report['top_label_agreement']:.1%}), max |probability difference| "
                f"{report['max_abs_probability_difference']:.3g}"
            )
            print(notes[-1], flush=True)
            backends = {
                "torch": EmotionClassifier(model_dir),
                "onnx": EmotionClassifier(onnx_dir, backend="onnx", threads=args.threads),
                "onnx-int8": EmotionClassifier(int8_dir, backend="onnx", threads=args.threads),
            }
            for seconds in args.durations:
                waveform = speech_like(seconds)
                all_timings = time_backends(backends, waveform, args.repeats)
                for backend, timings in all_timings.items():
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
                    print(f"{name:34s} {seconds:5.1f} s {backend:9s} RTF {median / seconds:.4f}", flush=True)

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
        f"{args.threads} intra-op thread(s) for every backend; timed: feature extractor + padding + forward "
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
        "| model | audio (s) | backend | RTF median | RTF min | RTF max | seconds per call (median) | speed vs torch |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    torch_medians = {(name, seconds): median for name, seconds, backend, *_, median in rows if backend == "torch"}
    lines += [
        f"| {name} | {seconds:g} | {backend} | {rtf:.4f} | {low:.4f} | {high:.4f} | {median:.3f} | "
        f"{torch_medians[name, seconds] / median:.2f}x |"
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
