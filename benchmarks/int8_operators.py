"""What int8 dynamic quantisation should cover: a wav2vec2-base-sized Wav2Vec2SER on 6 s of audio, batch 1, torch fp32
against ONNX fp32 and these int8 graphs (onnxruntime `quantize_dynamic`, QInt8 weights):

  int8-default-operators   onnxruntime's default operator set (Conv -> ConvInteger included), the plain export
  int8-matmul              MatMul only, the plain export (the feature encoder's convolutions stay fp32 Conv)
  int8-matmul-encoder      MatMul only, the export with the feature encoder's strided convolutions as MatMuls
                           (`export_onnx(convolutions_as_matmuls=True)`): what `hf-ser export-onnx --quantize int8` does
  int8-matmul-encoder-fused  the same after onnxruntime's transformer optimizer (`optimize_model`, model_type bert:
                           Gelu / BiasGelu / SkipLayerNormalization fusions) on the fp32 graph, before quantising
  int8-matmul-encoder-per-channel  int8-matmul-encoder with per-channel weight scales
  int8-static-encoder      static (calibrated) quantisation of the same graph's MatMuls (`quantize_static`, QDQ
                           format, MinMax ranges from 12 EmoDB files, activations uint8, weights int8, constant-weight
                           MatMuls only): no DynamicQuantizeLinear at run time
  int8-static-encoder-qoperator  the same in QOperator format (QLinearMatMul nodes instead of Q/DQ pairs)
  int8-static-encoder-conv  int8-static-encoder with the remaining Conv nodes (first layer, positional convolution)
                           quantised as well

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/int8_operators.py --threads 2 --repeats 3 [--variants NAME ...]

The backends take turns in every repeat (one warm-up call each first); prints the median seconds per
`EmotionClassifier.logits` call, the speed against torch fp32 in the same run, and the load average before and after.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
from common import load_average
from inference_speed import build_models, speech_like
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from hf_ser.data.collator import clip_features
from hf_ser.inference.onnx_export import ONNX_FILE, export_onnx
from hf_ser.inference.predict import EmotionClassifier

# name: (fp32 graph it quantises, operators, per-channel, static format or None for dynamic)
VARIANTS = {
    "int8-default-operators": ("fp32", None, False, None),
    "int8-matmul": ("fp32", ["MatMul"], False, None),
    "int8-matmul-encoder": ("fp32-encoder", ["MatMul"], False, None),
    "int8-matmul-encoder-fused": ("fp32-encoder-fused", ["MatMul"], False, None),
    "int8-matmul-encoder-per-channel": ("fp32-encoder", ["MatMul"], True, None),
    "int8-static-encoder": ("fp32-encoder", ["MatMul"], False, "QDQ"),
    "int8-static-encoder-qoperator": ("fp32-encoder", ["MatMul"], False, "QOperator"),
    "int8-static-encoder-conv": ("fp32-encoder", ["MatMul", "Conv"], False, "QDQ"),
}
EMODB_WAV = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb" / "wav"
CALIBRATION_FILES = 12


class CalibrationBatches(CalibrationDataReader):
    """Model inputs of every 40th EmoDB file (speech-like audio without EmoDB), prepared as `EmotionClassifier` does."""

    def __init__(self, classifier: EmotionClassifier):
        files = sorted(EMODB_WAV.glob("*.wav"))[::40][:CALIBRATION_FILES]
        waveforms = [sf.read(f, dtype="float32")[0] for f in files] or [speech_like(6.0, seed) for seed in range(4)]
        input_name = classifier.feature_extractor.model_input_names[0]
        batches = []
        for waveform in waveforms:
            features = clip_features(
                classifier.feature_extractor, [waveform], classifier.sampling_rate, None, classifier.clip_length
            )
            batch = classifier.collator([dict(zip(features, values)) for values in zip(*features.values())])
            batches.append(
                {
                    input_name: batch[input_name].numpy(),
                    "attention_mask": batch["attention_mask"].numpy().astype("int64"),
                }
            )
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)


def fused(source: Path, target: Path, hidden_size: int, heads: int) -> None:
    """onnxruntime's transformer optimizer on `source`'s graph, written to `target` with `source`'s other files."""
    from onnxruntime.transformers.optimizer import optimize_model

    for name in ("symbolic_shape_infer", "onnxruntime.tools.symbolic_shape_infer"):  # a warning per strided Slice
        logging.getLogger(name).setLevel(logging.ERROR)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(ONNX_FILE))
    optimized = optimize_model(str(source / ONNX_FILE), model_type="bert", num_heads=heads, hidden_size=hidden_size)
    print({"fused": {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}})
    optimized.save_model_to_file(str(target / ONNX_FILE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    load_start = load_average()
    torch.set_num_threads(args.threads)
    model, extractor = build_models()["Wav2Vec2SER, wav2vec2-base size"]
    work = Path(tempfile.mkdtemp(prefix="int8-operators-"))
    model.eval().save_pretrained(work / "torch")
    extractor.save_pretrained(work / "torch")
    export_onnx(work / "torch", work / "fp32", verify=False)
    sources = {VARIANTS[name][0] for name in args.variants}
    if sources & {"fp32-encoder", "fp32-encoder-fused"}:
        export_onnx(work / "torch", work / "fp32-encoder", verify=False, convolutions_as_matmuls=True)
    if "fp32-encoder-fused" in sources:
        backbone = model.config.backbone_config
        fused(work / "fp32-encoder", work / "fp32-encoder-fused", backbone.hidden_size, backbone.num_attention_heads)
    for name in args.variants:
        source, operators, per_channel, static_format = VARIANTS[name]
        shutil.copytree(work / source, work / name, ignore=shutil.ignore_patterns(ONNX_FILE))
        if static_format:
            quantize_static(
                work / source / ONNX_FILE,
                work / name / ONNX_FILE,
                CalibrationBatches(EmotionClassifier(work / source, backend="onnx", threads=args.threads)),
                quant_format=getattr(QuantFormat, static_format),
                op_types_to_quantize=operators,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"MatMulConstBOnly": True},
            )
            continue
        quantize_dynamic(
            work / source / ONNX_FILE,
            work / name / ONNX_FILE,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=operators,
            per_channel=per_channel,
        )
    backends = {"torch": EmotionClassifier(work / "torch")}
    for name in ["fp32", *args.variants]:
        backends[name] = EmotionClassifier(work / name, backend="onnx", threads=args.threads)
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
    speed = {name: round(medians["torch"] / median, 2) for name, median in medians.items()}
    print({"median_seconds": medians, "speed_vs_torch": speed, "load_start": load_start, "load_end": load_average()})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
