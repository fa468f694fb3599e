"""ONNX export of a trained hf-ser model, and the onnxruntime model that `hf-ser predict --backend onnx` runs.

    hf-ser export-onnx MODEL OUT_DIR [--opset 18] [--no-verify]

The graph maps `input_values` (batch, samples) and `attention_mask` (batch, samples) to per-input `logits`
(batch, num_labels), with dynamic batch and time axes. Whisper-encoder models take `input_features` (batch, mel bins,
frames) and `attention_mask` (batch, frames) instead: with `whisper_clip_length` (the default) the frame axis is dynamic
too, up to `2 * max_source_positions` frames (3000 = 30 s for released checkpoints; `max_frames` in onnx_export.json),
and hf-ser feeds it features at the batch's clip length; with `whisper_clip_length: false` only the batch axis is
dynamic, the frames fixed at `2 * max_source_positions`, the length the WhisperFeatureExtractor pads every input to.
It is exported with `torch.export` (the dynamo-based exporter,
the default of `torch.onnx.export`): the TorchScript exporter (`dynamo=False`) bakes the data-dependent attention-mask
handling of transformers' wav2vec2 into constants, and its logits then differ from PyTorch's by more than 1 (measured
with torch 2.13, transformers 5.24). SERCNN is exported on its per-input path (`aggregate_segments=False`); when the
config asks for segment averaging, `OnnxSERModel` splits each input into segments and averages their logits with the
same `split_into_segments` that the PyTorch model uses, so both backends give the same answer.

OUT_DIR gets `model.onnx`, the model's `config.json` (labels, architecture), the feature extractor's
`preprocessor_config.json` and `onnx_export.json` (input names, dynamic axes, shortest supported input or fixed
frame count, `task`: `categorical`, or `dimensional` when `logits` are the values of the dimensions of a
`problem_type: regression` model, `feature_encoder_as_matmuls`, measured parity).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from hf_ser.inference.conv_matmul import feature_encoder_as_matmuls
from hf_ser.inference.loading import load_model
from hf_ser.models.modeling_ser_cnn import split_into_segments
from hf_ser.models.modeling_wav2vec2_ser import (
    encodes_clips_alone,
    encodes_whisper_at_clip_length,
    whisper_clip_frames,
)

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXPORT_INFO_FILE = "onnx_export.json"
INPUT_NAMES = ["input_values", "attention_mask"]  # waveform models; Whisper encoders: input_features, attention_mask
DEFAULT_OPSET = 18
# torch's dynamo-based exporter writes opset 18 or newer: asked for less, it silently writes 18.
MIN_OPSET = 18
# ONNX keeps a model in one protobuf file only below 2 GiB; larger weights go to an external data file.
PROTOBUF_LIMIT_BYTES = 2**31 - 2**26


class LogitsOnly(nn.Module):
    """The exported function: (inputs, attention_mask) -> per-input logits, nothing data-dependent.

    `inputs` go to the model as `input_name`: `input_values` (waveforms) or `input_features` (Whisper log-Mel).
    """

    def __init__(self, model: PreTrainedModel, input_name: str = "input_values"):
        super().__init__()
        self.model = model
        self.input_name = input_name
        self.extra = {"aggregate_segments": False} if model.config.model_type == "ser-cnn" else {}

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        named = {self.input_name: inputs, "attention_mask": attention_mask}
        return self.model(**named, return_dict=True, **self.extra).logits


def _load(model_or_path: Union[str, os.PathLike, PreTrainedModel], feature_extractor=None):
    if isinstance(model_or_path, PreTrainedModel):
        if feature_extractor is None:
            raise ValueError("pass `feature_extractor` with an in-memory model (it is saved next to the ONNX file)")
        return model_or_path, feature_extractor
    return load_model(model_or_path, feature_extractor)


def whisper_input_shape(model: PreTrainedModel) -> Optional[tuple[int, int]]:
    """(mel bins, frames) of a Whisper encoder's fixed-size `input_features`; None for waveform models."""
    backbone = getattr(model.config, "backbone_config", None)
    if backbone is None or backbone.model_type != "whisper":
        return None
    # WhisperEncoder's convolutions have strides 1 and 2 and it refuses any other frame count.
    return int(backbone.num_mel_bins), 2 * int(backbone.max_source_positions)


def _check_exportable(model: PreTrainedModel, feature_extractor) -> str:
    """The graph's input name; refuses a feature extractor whose output the model cannot take."""
    input_name = feature_extractor.model_input_names[0]
    shape = whisper_input_shape(model)
    if shape is None:
        if input_name != "input_values":
            raise ValueError(f"the feature extractor gives `{input_name}`; this waveform model takes `input_values`")
        return input_name
    mel_bins, frames = shape
    given = (getattr(feature_extractor, "feature_size", None), getattr(feature_extractor, "nb_max_frames", None))
    if input_name != "input_features" or given != (mel_bins, frames):
        raise ValueError(
            f"the Whisper encoder takes `input_features` of {mel_bins} mel bins x {frames} frames "
            f"(num_mel_bins, 2 * max_source_positions); the feature extractor ({type(feature_extractor).__name__}, "
            f"preprocessor_config.json) gives `{input_name}` with feature_size={given[0]}, nb_max_frames={given[1]}"
        )
    return input_name


def _shortest_input(exported: torch.export.ExportedProgram) -> int:
    """The fewest samples the exported graph was proven valid for (torch.export refines the time axis's range)."""
    first_input = exported.graph_signature.user_inputs[0]
    placeholder = next(node for node in exported.graph.nodes if node.op == "placeholder" and node.name == first_input)
    samples = placeholder.meta["val"].shape[1]
    if isinstance(samples, int):
        raise RuntimeError(
            "the time axis was specialised to a constant during export; the ONNX model would be fixed-length"
        )
    return int(exported.range_constraints[samples.node.expr].lower)


# What torch's exporter and onnx_ir log on every export, though nothing is wrong with an hf-ser model: the op
# registry skips torchvision's ops (no hf-ser model uses one), and empty attribute lists default to INTS.
EXPORTER_NOTICES = {
    "torch.onnx._internal.exporter._registration": "torchvision is not installed",
    "onnx_ir._convenience": "Attribute type is ambiguous because it is an empty sequence",
}


class _DropNotice(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextmanager
def _without_exporter_notices():
    """The export without `EXPORTER_NOTICES` and torch's own FutureWarning about its `LeafSpec`, which say nothing
    to a user; every other warning and the exporter's progress lines stay."""
    filters = [(logging.getLogger(name), _DropNotice(prefix)) for name, prefix in EXPORTER_NOTICES.items()]
    for notice_logger, notice_filter in filters:
        notice_logger.addFilter(notice_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for notice_logger, notice_filter in filters:
            notice_logger.removeFilter(notice_filter)


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter would not write (below MIN_OPSET) or that onnx does not know yet."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"--opset {opset}: hf-ser exports with torch's dynamo exporter, which writes opsets {MIN_OPSET} to {newest} "
            f"(the installed onnx {onnx.__version__} knows up to {newest})"
        )


def export_onnx(
    model_or_path: Union[str, os.PathLike, PreTrainedModel],
    output_dir: Union[str, os.PathLike],
    feature_extractor=None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    convolutions_as_matmuls: bool = False,
) -> dict:
    """Export a model (folder, Hub id or in-memory `PreTrainedModel` + `feature_extractor`) to `output_dir`.

    Returns the export info also written to `onnx_export.json`; with `verify`, it holds the largest absolute difference
    between onnxruntime's and PyTorch's logits on random inputs at two batch sizes (and, for waveforms, two lengths).
    With `convolutions_as_matmuls` (what `--quantize int8` exports), a wav2vec2-family feature encoder's strided
    convolutions after the first are written as exact MatMuls (`hf_ser.inference.conv_matmul`), so that int8
    quantisation covers them; the parity check compares with the unchanged PyTorch model.
    """
    check_opset(opset)
    model, feature_extractor = _load(model_or_path, feature_extractor)
    input_name = _check_exportable(model, feature_extractor)
    input_names = [input_name, "attention_mask"]
    model = model.float().eval()
    wrapper = LogitsOnly(model, input_name).eval()
    whisper_shape = whisper_input_shape(model)
    clip_length = encodes_whisper_at_clip_length(model.config)
    dynamic_axes = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    if whisper_shape is None:
        example = (torch.randn(2, 16000), torch.ones(2, 16000, dtype=torch.long))
        dynamic = {"inputs": dynamic_axes, "attention_mask": dynamic_axes}
    else:
        mel_bins, frames = whisper_shape
        if clip_length:  # any even frame count up to `frames`: the example is shorter, so no size is special
            frames = whisper_clip_frames(frames // 3, frames)
            features_axes = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC}
        else:
            features_axes = dynamic_axes = {0: torch.export.Dim.DYNAMIC}
        example = (torch.randn(2, mel_bins, frames), torch.ones(2, frames, dtype=torch.long))
        dynamic = {"inputs": features_axes, "attention_mask": dynamic_axes}
    rewrite = feature_encoder_as_matmuls(model) if convolutions_as_matmuls else nullcontext(False)
    with torch.no_grad(), rewrite as rewritten:
        exported = torch.export.export(wrapper, example, dynamic_shapes=dynamic, strict=False)
    min_samples = _shortest_input(exported) if whisper_shape is None else None

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = output_dir / ONNX_FILE
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with _without_exporter_notices():
        program = torch.onnx.export(
            exported,
            example,
            input_names=input_names,
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
        )
    written = {entry.domain: entry.version for entry in program.model_proto.opset_import}.get("", None)
    if written != opset:
        raise ValueError(
            f"asked for ONNX opset {opset}, but torch's exporter wrote opset {written}: use --opset {written}"
        )
    program.save(str(onnx_path), external_data=weight_bytes > PROTOBUF_LIMIT_BYTES)
    model.config.save_pretrained(output_dir)
    feature_extractor.save_pretrained(output_dir)

    info = {"onnx_file": ONNX_FILE, "inputs": input_names, "outputs": ["logits"]}
    if whisper_shape is None:
        info["dynamic_axes"] = {name: {"0": "batch", "1": "samples"} for name in input_names}
        info["min_samples"] = min_samples
    elif clip_length:  # frames at the batch's clip length, up to the encoder's positional embeddings
        info["dynamic_axes"] = {
            input_name: {"0": "batch", "2": "frames"},
            "attention_mask": {"0": "batch", "1": "frames"},
        }
        info["num_mel_bins"], info["max_frames"] = whisper_shape
    else:  # the frame axis is fixed at what the encoder requires
        info["dynamic_axes"] = {name: {"0": "batch"} for name in input_names}
        info["num_mel_bins"], info["num_frames"] = whisper_shape
    info.update(
        opset=opset,
        model_type=model.config.model_type,
        # dimensional: `logits` are the values of the dimensions (config id2label), not class scores
        task="dimensional" if getattr(model.config, "problem_type", None) == "regression" else "categorical",
        feature_encoder_as_matmuls=rewritten,
        segment_averaging_outside_graph=model.config.model_type == "ser-cnn"
        and bool(getattr(model.config, "aggregate_segments", False)),
        torch_version=torch.__version__,
    )
    info_path = output_dir / EXPORT_INFO_FILE
    info_path.write_text(json.dumps(info, indent=2) + "\n")  # OnnxSERModel reads the input names from it
    if verify:
        info["parity"] = verify_parity(model, output_dir)
        info_path.write_text(json.dumps(info, indent=2) + "\n")
    return info


def verify_parity(model: PreTrainedModel, onnx_dir: Union[str, os.PathLike], seed: int = 0) -> dict:
    """Max |logits_onnx - logits_torch| over random padded batches of two shapes (different batch sizes; for
    waveforms different lengths too, for Whisper the fixed frame count)."""
    generator = torch.Generator().manual_seed(seed)
    onnx_model = OnnxSERModel(onnx_dir)
    wrapper = LogitsOnly(model.float().eval(), onnx_model.input_name)
    whisper_shape = whisper_input_shape(model)
    clip_length = encodes_whisper_at_clip_length(model.config)
    checks = []
    for batch, samples in ((1, 24_000), (3, 52_000)):
        if whisper_shape is None:
            inputs = torch.randn(batch, samples, generator=generator) * 0.1
            length, check = samples, {"batch": batch, "samples": samples}
        else:  # log-Mel-like: WhisperFeatureExtractor's features lie in about [-1, 1.5]
            mel_bins, length = whisper_shape
            if clip_length:  # two frame counts (1.5 s and 3.25 s at 10 ms), within the encoder's window
                length = whisper_clip_frames(min(samples // 160, length - 4), length)
            inputs = (torch.randn(batch, mel_bins, length, generator=generator) * 0.5).clamp(-1.0, 1.5)
            check = {"batch": batch, "frames": length}
        attention_mask = torch.ones(batch, length, dtype=torch.long)
        attention_mask[-1, length * 2 // 3 :] = 0  # one padded row, so the mask path is checked too
        with torch.no_grad():
            expected = wrapper(inputs, attention_mask).numpy()
        # group-norm encoders: PyTorch encodes a padded batch clip by clip, and so does OnnxSERModel around the graph
        clip_by_clip = model.config.model_type == "wav2vec2-ser" and encodes_clips_alone(model.config)
        run = onnx_model if clip_by_clip else onnx_model.run_graph
        actual = run(inputs.numpy(), attention_mask.numpy())
        checks.append({**check, "max_abs_diff": float(np.abs(actual - expected).max())})
    return {"checks": checks, "max_abs_diff": max(check["max_abs_diff"] for check in checks)}


class OnnxSERModel:
    """An exported model under onnxruntime: padded inputs + `attention_mask` in, logits out (NumPy).

    The inputs are `input_values` (waveforms) or, for Whisper encoders, `input_features`: at clip length, up to
    `max_frames`, or of the fixed frame count `num_frames` (30 s path) (`inputs`, `max_frames`, `num_frames` in
    onnx_export.json; folders without them hold waveform graphs). Behaves like the
    PyTorch model in evaluation mode: SERCNN configs with `aggregate_segments` average the logits of each input's
    segments. Waveforms shorter than the graph's shortest supported length (`min_samples`) are zero-padded with a
    zero attention mask, which the models ignore when pooling.
    """

    def __init__(self, onnx_dir: Union[str, os.PathLike], threads: Optional[int] = None):
        import onnxruntime

        import hf_ser.models  # noqa: F401  (AutoConfig needs the registered model types)

        onnx_dir = Path(onnx_dir)
        onnx_path = onnx_dir / ONNX_FILE
        if not onnx_path.is_file():
            raise FileNotFoundError(
                f"{onnx_path} not found: export the model first with `hf-ser export-onnx MODEL {onnx_dir}`"
            )
        info_path = onnx_dir / EXPORT_INFO_FILE
        self.info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        self.input_name = self.info.get("inputs", INPUT_NAMES)[0]
        self.min_samples = int(self.info.get("min_samples", 1))
        self.num_frames = self.info.get("num_frames")  # Whisper, 30 s path: the fixed frame axis
        self.max_frames = self.info.get("max_frames")  # Whisper at clip length: the most frames the graph takes
        self.config = AutoConfig.from_pretrained(onnx_dir)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def run_graph(self, inputs: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """One pass of the exported graph: per-input logits. `inputs` are the graph's `input_name` (time last)."""
        inputs = np.asarray(inputs, dtype=np.float32)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        if self.num_frames is not None and inputs.shape[-1] != self.num_frames:
            raise ValueError(
                f"the exported Whisper encoder takes exactly {self.num_frames} frames (`num_frames` in "
                f"{EXPORT_INFO_FILE}), got {inputs.shape[-1]}: prepare inputs with the exported feature extractor"
            )
        if self.max_frames is not None and inputs.shape[-1] > self.max_frames:
            raise ValueError(
                f"the exported Whisper encoder takes at most {self.max_frames} frames (`max_frames` in "
                f"{EXPORT_INFO_FILE}), got {inputs.shape[-1]}: crop or split the audio"
            )
        shortfall = self.min_samples - inputs.shape[-1]
        if shortfall > 0:
            inputs = np.pad(inputs, [(0, 0)] * (inputs.ndim - 1) + [(0, shortfall)])
            attention_mask = np.pad(attention_mask, ((0, 0), (0, shortfall)))
        return self.session.run(["logits"], {self.input_name: inputs, "attention_mask": attention_mask})[0]

    def __call__(self, input_values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Evaluation logits of a padded batch: `input_values`, or `input_features` for Whisper encoders."""
        config = self.config
        attention_mask = np.asarray(attention_mask)
        if config.model_type == "wav2vec2-ser" and encodes_clips_alone(config) and (attention_mask == 0).any():
            # group-norm encoders: each clip alone and unpadded, as Wav2Vec2SER.forward encodes them
            return np.concatenate(
                [
                    self.run_graph(input_values[row : row + 1, :length], attention_mask[row : row + 1, :length])
                    for row, length in enumerate(attention_mask.sum(axis=1))
                ]
            )
        if not (config.model_type == "ser-cnn" and config.aggregate_segments):
            return self.run_graph(input_values, attention_mask)
        # SERCNN's evaluation protocol (SERCNN.segment_logits): mean logits over each input's segments.
        pieces, owners = [], []
        for row, length in enumerate(np.asarray(attention_mask).sum(axis=1)):
            segments = split_into_segments(
                torch.from_numpy(np.ascontiguousarray(input_values[row, :length])),
                config.sampling_rate,
                config.segment_seconds,
                config.segment_hop_seconds,
            )
            pieces.extend(segment.numpy() for segment in segments)
            owners.extend([row] * len(segments))
        longest = max(len(piece) for piece in pieces)
        batch = np.zeros((len(pieces), longest), dtype=np.float32)
        mask = np.zeros((len(pieces), longest), dtype=np.int64)
        for index, piece in enumerate(pieces):
            batch[index, : len(piece)], mask[index, : len(piece)] = piece, 1
        logits = self.run_graph(batch, mask)
        owners = np.asarray(owners)
        return np.stack([logits[owners == row].mean(axis=0) for row in range(len(input_values))])


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-ser export-onnx",
        description="Export a trained model to ONNX (dynamic batch and time axes; Whisper encoders: dynamic batch and "
        "frames at clip length, or fixed frames with whisper_clip_length false) with its config and feature extractor.",
    )
    parser.add_argument("model", help="model folder or Hub id (as saved by `hf-ser train`)")
    parser.add_argument("output_dir", help="folder for model.onnx, config.json, preprocessor_config.json")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch parity check")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="write an int8 model (onnxruntime dynamic quantisation) with a parity report against fp32 "
        "(quantization_parity.json)",
    )
    parser.add_argument(
        "--parity_data_dir",
        help="--quantize: audio to compare int8 with fp32 on (every audio file under it, e.g. EmoDB's folder); "
        "default: the run's test split (test_predictions.json)",
    )
    parser.add_argument("--threads", type=int, help="--quantize: onnxruntime threads for the parity run")
    args = parser.parse_args(argv)
    if args.parity_data_dir and not args.quantize:
        parser.error("--parity_data_dir goes with --quantize")
    if args.quantize:
        from hf_ser.inference.quantization import PARITY_FILE, export_quantized, parity_summary

        report = export_quantized(
            args.model,
            args.output_dir,
            args.quantize,
            args.parity_data_dir,
            args.opset,
            not args.no_verify,
            args.threads,
        )
        print(
            f"wrote {Path(args.output_dir) / ONNX_FILE} ({args.quantize}, {report['int8_bytes'] / 2**20:.1f} MiB; fp32 "
            f"{report['fp32_bytes'] / 2**20:.1f} MiB); on {report['files']} files of {report['audio']}: "
            f"{parity_summary(report)} ({PARITY_FILE})"
        )
        return 0
    info = export_onnx(args.model, args.output_dir, opset=args.opset, verify=not args.no_verify)
    if "min_samples" in info:
        axes = f"dynamic batch and time axes; shortest input {info['min_samples']} samples"
    elif "max_frames" in info:
        axes = f"dynamic batch and frame axes; {info['num_mel_bins']} mel bins x up to {info['max_frames']} frames"
    else:
        axes = f"dynamic batch axis; fixed {info['num_mel_bins']} mel bins x {info['num_frames']} frames"
    print(f"wrote {Path(args.output_dir) / ONNX_FILE} (inputs: {', '.join(info['inputs'])}; {axes})")
    if "parity" in info:
        outputs = "value" if info["task"] == "dimensional" else "logits"
        print(f"parity with PyTorch: max |{outputs} difference| = {info['parity']['max_abs_diff']:.2e}")
    return 0
