"""A Whisper training step at the clip's length against the released 30 s window, on the same model and audio.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/whisper_clip_length.py --rounds 3

Model: `Wav2Vec2SER` around the encoder of Whisper-small's published config (../shared/checkpoints/openai__whisper-small:
12 layers, d_model 768, 80 mel bins; `--encoder-layers` shrinks it for a quick run), random weights (time does not
depend on their values), the seed's head, frozen conv front end (hf-ser's default). Input: `--batch-size` speech-like
clips of `--seconds` each, prepared as training prepares them (`clip_features` + `SERDataCollator`): Mel frames at the
clip length (`whisper_clip_length: true`, hf-ser's default) or padded to 30 s (`false`).

Timed: one training step, forward + cross-entropy + backward (+ zeroing the gradients), per path; the paths alternate
(clip, 30 s, clip, 30 s, ...) in one process, so a change of load on the shared machine hits both. The first step of
each path is a warm-up and not counted. Also written: how the logits of the two paths differ on the same audio
(evaluation mode): the 30 s path's self-attention runs over the padding, the clip-length path's is masked to each clip.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import load_average, machine_description, write_report
from transformers import AutoConfig, WhisperFeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.data.collator import SERDataCollator, clip_features
from hf_ser.data.demo_corpus import synthesize

CHECKPOINT = Path(__file__).resolve().parents[2] / "shared" / "checkpoints" / "openai__whisper-small"
LABELS = ["angry", "happy", "neutral", "sad"]
PATHS = {"clip_length": True, "30s": False}


def speech_like(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """`count` clips of `seconds` each, concatenated from the demo corpus's speech-like syllables."""
    rng = np.random.default_rng(seed)
    clips = []
    for index in range(count):
        pieces, total = [], 0
        while total < seconds * 16000:
            piece = synthesize(LABELS[(index + len(pieces)) % 4], rng.uniform(100, 220), (600.0, 1500.0), rng)
            pieces.append(piece)
            total += len(piece)
        clips.append(np.concatenate(pieces)[: int(seconds * 16000)].astype(np.float32))
    return clips


def batch_of(extractor, clips: list[np.ndarray], clip_length: bool, labels: torch.Tensor) -> dict:
    features = clip_features(extractor, clips, 16000, None, clip_length)
    examples = [dict(zip(features, values)) for values in zip(*features.values())]
    return {**SERDataCollator(extractor)(examples), "labels": labels}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per path (after one warm-up each)")
    parser.add_argument("--encoder-layers", type=int, help="fewer encoder layers than published (quick runs)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "whisper_clip_length.json"))
    args = parser.parse_args(argv)
    load_start = load_average()

    backbone = AutoConfig.from_pretrained(CHECKPOINT)
    if args.encoder_layers:
        backbone.encoder_layers = args.encoder_layers
    extractor = WhisperFeatureExtractor.from_pretrained(CHECKPOINT)
    torch.manual_seed(0)
    model = Wav2Vec2SER(
        Wav2Vec2SERConfig(
            backbone_config=backbone.to_dict(),
            id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)},
        )
    )
    clips = speech_like(args.batch_size, args.seconds)
    labels = torch.arange(args.batch_size) % len(LABELS)
    batches = {path: batch_of(extractor, clips, clip_length, labels) for path, clip_length in PATHS.items()}

    def step(path: str) -> float:
        model.config.whisper_clip_length = PATHS[path]
        model.train()
        start = time.perf_counter()
        model(**batches[path]).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    seconds = {path: [] for path in PATHS}
    loads = []
    for round_index in range(args.rounds + 1):
        for path in PATHS:
            elapsed = step(path)
            if round_index:  # the first round warms up
                seconds[path].append(round(elapsed, 3))
            loads.append(load_average()[0])
            print(f"[round {round_index}/{args.rounds}] {path}: {elapsed:.2f} s", flush=True)

    with torch.no_grad():
        model.eval()
        logits = {}
        for path, clip_length in PATHS.items():
            model.config.whisper_clip_length = clip_length
            logits[path] = model(**{k: v for k, v in batches[path].items() if k != "labels"}).logits
    difference = (logits["clip_length"] - logits["30s"]).abs()
    probability_difference = (logits["clip_length"].softmax(-1) - logits["30s"].softmax(-1)).abs()

    medians = {path: statistics.median(times) for path, times in seconds.items()}
    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/whisper_clip_length.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    payload = {
        "command": command.strip(),
        "model": f"Wav2Vec2SER, Whisper-small encoder ({backbone.encoder_layers} layers, d_model {backbone.d_model}), "
        "random weights, seed head, frozen conv front end",
        "batch": f"{args.batch_size} x {args.seconds:g} s",
        "mel_frames": {path: int(batch["input_features"].shape[-1]) for path, batch in batches.items()},
        "step_seconds": seconds,
        "median_step_seconds": medians,
        "speedup_clip_length_vs_30s": round(medians["30s"] / medians["clip_length"], 2),
        "logits_difference_clip_length_vs_30s": {
            "max_abs": float(difference.max()),
            "mean_abs": float(difference.mean()),
            "logit_scale_max_abs": float(logits["30s"].abs().max()),
            "max_abs_probability": float(probability_difference.max()),
            "same_top_label": int((logits["clip_length"].argmax(-1) == logits["30s"].argmax(-1)).sum()),
            "clips": args.batch_size,
        },
        "load_average_1min": {"start": load_start[0], "after_each_step": loads, "end": load_average()[0]},
        "machine": machine_description(),
        "note": "shared machine (other jobs running): compare the two paths by their ratio, measured in this run",
    }
    write_report(args.output, payload)
    print(
        f"median step: clip length {medians['clip_length']:.2f} s, 30 s {medians['30s']:.2f} s -> "
        f"{payload['speedup_clip_length_vs_30s']}x; max |logit difference| {float(difference.max()):.3g}; "
        f"wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
