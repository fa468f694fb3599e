"""Which operators int8 dynamic quantisation should cover: a wav2vec2-base-sized Wav2Vec2SER on 6 s of audio, batch 1,
torch fp32 against ONNX fp32, ONNX int8 with onnxruntime's default operator set (Conv -> ConvInteger included) and
ONNX int8 with MatMul only (hf-ser's choice, `hf_ser.inference.quantization.QUANTIZED_OPERATORS`).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/int8_operators.py --threads 2 --repeats 3

The backends take turns in every repeat (one warm-up call each first); prints the median seconds per
`EmotionClassifier.logits` call and the load average before and after.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import load_average
from inference_speed import build_models, speech_like
from onnxruntime.quantization import QuantType, quantize_dynamic

from hf_ser.inference.onnx_export import ONNX_FILE, export_onnx
from hf_ser.inference.predict import EmotionClassifier

VARIANTS = {"int8-default-operators": None, "int8-matmul": ["MatMul"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_start = load_average()
    torch.set_num_threads(args.threads)
    model, extractor = build_models()["Wav2Vec2SER, wav2vec2-base size"]
    work = Path(tempfile.mkdtemp(prefix="int8-operators-"))
    model.eval().save_pretrained(work / "torch")
    extractor.save_pretrained(work / "torch")
    export_onnx(work / "torch", work / "fp32", verify=False)
    for name, operators in VARIANTS.items():
        shutil.copytree(work / "fp32", work / name, ignore=shutil.ignore_patterns(ONNX_FILE))
        quantize_dynamic(
            work / "fp32" / ONNX_FILE,
            work / name / ONNX_FILE,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=operators,
        )
    backends = {
        name: EmotionClassifier(work / name, backend="onnx", threads=args.threads) for name in ["fp32", *VARIANTS]
    }
    backends["torch"] = EmotionClassifier(work / "torch")
    waveform = speech_like(6.0)
    for classifier in backends.values():
        classifier.logits([waveform])
    seconds = {name: [] for name in backends}
    for _ in range(args.repeats):
        for name, classifier in backends.items():
            start = time.perf_counter()
            classifier.logits([waveform])
            seconds[name].append(time.perf_counter() - start)
    medians = {name: round(statistics.median(values), 3) for name, values in seconds.items()}
    print({"median_seconds": medians, "load_start": load_start, "load_end": load_average()})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
