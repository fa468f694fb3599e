"""int8 ONNX models: onnxruntime's dynamic quantisation of an fp32 export, and its parity report against fp32.

    hf-ser export-onnx MODEL OUT_DIR --quantize int8 [--parity_data_dir AUDIO_DIR]

OUT_DIR's `model.onnx` is the quantised graph (MatMul weights stored as int8, activations quantised per batch at run
time with DynamicQuantizeLinear; Conv nodes stay fp32), next to the files an fp32 export writes, so `hf-ser predict
OUT_DIR --backend onnx` runs it as it runs any export. The fp32 graph it quantises is exported with a wav2vec2-family
feature encoder's strided convolutions after the first as exact MatMuls (`hf_ser.inference.conv_matmul`), so int8
covers them too. `quantization_parity.json` compares the int8 graph with that fp32 graph (exported into a temporary
folder, checked against PyTorch, and discarded) on real audio: the share of files whose top label is the same, and the largest
difference of any class probability; for a dimensional model (config `problem_type: regression`), the largest and
mean absolute difference of the values and the concordance (CCC) of int8's values with fp32's, per dimension. The audio
is `--parity_data_dir` (every audio file under it, e.g. EmoDB's folder) or, for a run folder, the clips of its test
split (`test_predictions.json`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from hf_ser.inference.onnx_export import (
    DEFAULT_OPSET,
    EXPORT_INFO_FILE,
    ONNX_FILE,
    PROTOBUF_LIMIT_BYTES,
    export_onnx,
)
from hf_ser.inference.predict import EmotionClassifier, Prediction, find_audio_files
from hf_ser.models.modeling_wav2vec2_ser import concordance_correlation
from hf_ser.run_folder import predictions_file, read_json

logger = logging.getLogger(__name__)

PARITY_FILE = "quantization_parity.json"
QUANTIZATIONS = ("int8",)
# Only MatMul weights become int8 (MatMulInteger); Conv nodes stay fp32. With onnxruntime's default set, which also
# turns Conv into ConvInteger, a wav2vec2-base-sized model ran slower than its fp32 graph on an AVX2 CPU; MatMul only,
# 1.3x faster than fp32, and with the feature encoder's convolutions exported as MatMuls another 1.1-1.2x
# (benchmarks/int8_operators.py, docs/benchmarks.md section 8).
QUANTIZED_OPERATORS = ["MatMul"]


def parity_audio(model_or_path: Union[str, os.PathLike], parity_data_dir: Optional[Union[str, os.PathLike]]) -> tuple:
    """(audio files, where they come from) for the parity report: every audio file under `parity_data_dir`, else the
    test split of the run in `model_or_path` (its `test_predictions.json`)."""
    if parity_data_dir is not None:
        files, failures = find_audio_files([parity_data_dir])
        if not files:
            raise ValueError(f"--parity_data_dir {parity_data_dir}: {failures[0][1] if failures else 'no audio'}")
        return files, f"audio files under {parity_data_dir}"
    listing = Path(model_or_path) / predictions_file("test")
    if not listing.is_file():
        raise ValueError(
            f"{listing} not found: --quantize compares int8 with fp32 on real audio; pass --parity_data_dir DIR "
            "(e.g. EmoDB's folder) or export a run folder that holds its test split's predictions"
        )
    rows = read_json(listing)
    return [Path(row["path"]) for row in rows], f"test split of {model_or_path} ({listing.name})"


def quantization_parity(fp32_dir: Path, int8_dir: Path, files: list, threads: Optional[int] = None) -> dict:
    """How the int8 graph's predictions compare with the fp32 graph's on `files` (decoded and batched alike)."""
    classifiers = {
        name: EmotionClassifier(folder, backend="onnx", threads=threads)
        for name, folder in (("fp32", fp32_dir), ("int8", int8_dir))
    }
    reports = {name: classifier.predict_files(files) for name, classifier in classifiers.items()}
    fp32, int8 = (reports[name].predictions for name in ("fp32", "int8"))
    compared = {
        "files": len(fp32),
        "skipped": [{"file": file, "reason": reason} for file, reason in reports["fp32"].failures],
    }
    if classifiers["fp32"].dimensional:
        return {**compared, **dimensional_parity(fp32, int8, classifiers["fp32"].labels)}
    labels = list(fp32[0].probabilities) if fp32 else []
    differences = np.array(
        [[abs(a.probabilities[label] - b.probabilities[label]) for label in labels] for a, b in zip(fp32, int8)]
    )
    same = sum(a.label == b.label for a, b in zip(fp32, int8))
    return {
        **compared,
        "identical_top_labels": int(same),
        "top_label_agreement": same / len(fp32) if fp32 else None,
        "max_abs_probability_difference": float(differences.max()) if fp32 else None,
        "mean_abs_probability_difference": float(differences.mean()) if fp32 else None,
    }


def dimensional_parity(fp32: list[Prediction], int8: list[Prediction], dimensions: list[str]) -> dict:
    """A dimensional model's int8-vs-fp32 report: the largest and mean |value difference| over files and dimensions,
    and per dimension those two and the CCC of int8's values with fp32's over the files (1: the same values; with
    fewer than two files, or values constant across files, CCC says nothing and is 0)."""
    if not fp32:
        return {"dimensions": dimensions, "max_abs_value_difference": None, "mean_abs_value_difference": None}
    reference, quantised = (np.array([[p.dimensions[d] for d in dimensions] for p in side]) for side in (fp32, int8))
    differences = np.abs(quantised - reference)
    ccc = concordance_correlation(torch.from_numpy(quantised), torch.from_numpy(reference)).tolist()
    return {
        "dimensions": dimensions,
        "max_abs_value_difference": float(differences.max()),
        "mean_abs_value_difference": float(differences.mean()),
        "mean_ccc_with_fp32": float(np.mean(ccc)),
        "per_dimension": {
            name: {
                "max_abs_value_difference": float(differences[:, column].max()),
                "mean_abs_value_difference": float(differences[:, column].mean()),
                "ccc_with_fp32": float(ccc[column]),
            }
            for column, name in enumerate(dimensions)
        },
    }


def quantize_export(
    fp32_dir: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    files: list,
    audio: str,
    threads: Optional[int] = None,
) -> dict:
    """Quantise the export in `fp32_dir` dynamically to int8 (`onnxruntime.quantization.quantize_dynamic`: weights
    int8, activations uint8 per batch) into `output_dir/model.onnx`, copy the export's other files, and write the
    parity report on `files` (described by `audio`) to `quantization_parity.json`; returns the report."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_dir, output_dir = Path(fp32_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for item in fp32_dir.iterdir():  # config, feature extractor, export info: everything but the fp32 graph
        if not item.name.startswith(ONNX_FILE) and item.is_file():
            shutil.copy2(item, output_dir / item.name)
    fp32_bytes = sum(item.stat().st_size for item in fp32_dir.glob(f"{ONNX_FILE}*"))
    quantize_dynamic(
        fp32_dir / ONNX_FILE,
        output_dir / ONNX_FILE,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=QUANTIZED_OPERATORS,
        use_external_data_format=fp32_bytes > PROTOBUF_LIMIT_BYTES,
    )
    info_path = output_dir / EXPORT_INFO_FILE  # the fp32 export's, copied above
    info = json.loads(info_path.read_text())
    report = {
        "quantization": "int8 dynamic (onnxruntime.quantization.quantize_dynamic, weight_type QInt8, "
        f"op_types_to_quantize {QUANTIZED_OPERATORS})"
        + (", feature encoder convolutions as MatMuls" if info.get("feature_encoder_as_matmuls") else ""),
        "audio": audio,
        "fp32_bytes": fp32_bytes,
        "int8_bytes": sum(item.stat().st_size for item in output_dir.glob(f"{ONNX_FILE}*")),
        **quantization_parity(fp32_dir, output_dir, files, threads),
    }
    (output_dir / PARITY_FILE).write_text(json.dumps(report, indent=2) + "\n")
    info["quantization"] = {"type": "int8", "parity_file": PARITY_FILE}
    if "parity" in info:  # measured on the fp32 graph, against PyTorch, before quantisation
        info["fp32_parity"] = info.pop("parity")
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    logger.info("int8: %s", parity_summary(report))
    return report


def parity_summary(report: dict) -> str:
    """One line of the parity report: top labels and probabilities, or for a dimensional model values and CCC."""
    if "dimensions" in report:
        if report["max_abs_value_difference"] is None:
            return "no file to compare on"
        return (
            f"max |value difference| {report['max_abs_value_difference']:.2e} (mean "
            f"{report['mean_abs_value_difference']:.2e}), CCC with fp32 {report['mean_ccc_with_fp32']:.4f} "
            f"(mean of {', '.join(report['dimensions'])})"
        )
    return (
        f"{report['identical_top_labels']} top labels as fp32, max |probability difference| "
        f"{report['max_abs_probability_difference'] or 0.0:.2e}"
    )


def export_quantized(
    model_or_path: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    quantize: str = "int8",
    parity_data_dir: Optional[Union[str, os.PathLike]] = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    threads: Optional[int] = None,
) -> dict:
    """`hf-ser export-onnx --quantize int8`: export `model_or_path` to ONNX in a temporary folder, then
    `quantize_export` it into `output_dir` with the parity report on `parity_audio`. Returns the report."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize {quantize}: hf-ser quantises to one of {QUANTIZATIONS}")
    files, audio = parity_audio(model_or_path, parity_data_dir)  # refused before the minutes of export
    with tempfile.TemporaryDirectory(prefix="hf-ser-fp32-") as fp32_dir:
        # the feature encoder's convolutions as MatMuls, so that they are quantised too (hf_ser.inference.conv_matmul)
        export_onnx(model_or_path, fp32_dir, opset=opset, verify=verify, convolutions_as_matmuls=True)
        return quantize_export(fp32_dir, output_dir, files, audio, threads)
