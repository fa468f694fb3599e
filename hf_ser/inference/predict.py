"""Emotion predictions for audio files: the top label and class probabilities per file, or an emotion timeline.

    hf-ser predict MODEL AUDIO... [--window S --hop S] [--format table|json|csv] [--output FILE] [--plot PNG]
                   [--batch-size N] [--backend torch|onnx]

MODEL is a model folder or Hub id (`--backend torch`) or a folder written by `hf-ser export-onnx` (`--backend onnx`,
chosen by itself for such a folder, which the console says).
AUDIO are files or folders (searched recursively for `hf_ser.data.audio.AUDIO_EXTENSIONS`), decoded with
`hf_ser.data.audio.load_audio` as in training. A file that cannot be decoded is reported with its reason and counted; the
other files are still predicted.

With `--window`/`--hop` each file is cut into windows (the last one ends exactly at the end of the file, so the
timeline covers all of it) and every window gets its own probabilities; the file's probabilities are then the
mean of its segments' probabilities (`AGGREGATE`).

A dimensional model (`task: dimensional`, config `problem_type: regression`) reports the value of each dimension
(e.g. arousal, valence, dominance, on the scale it was trained on) instead of a label and probabilities; a file's
values with a timeline are the mean of its segments' values.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from transformers import AutoFeatureExtractor, PreTrainedModel

from hf_ser.data.audio import AUDIO_EXTENSIONS, AudioDecodeError, audio_files_under, load_audio, probe_audio
from hf_ser.data.collator import SERDataCollator, clip_features
from hf_ser.inference.loading import check_model_reference, load_model
from hf_ser.models.modeling_ser_cnn import split_into_segments
from hf_ser.models.modeling_wav2vec2_ser import encodes_whisper_at_clip_length

logger = logging.getLogger(__name__)

AGGREGATE = "mean of segment probabilities"
DIMENSIONAL_AGGREGATE = "mean of segment values"
FORMATS = ("table", "json", "csv")
BACKENDS = ("torch", "onnx")


@dataclass
class Segment:
    """One window of a timeline: `[start, end)` in seconds and its class probabilities (a dimensional model: no label,
    no probabilities, the value of each dimension)."""

    start: float
    end: float
    label: Optional[str]
    probabilities: dict[str, float]
    dimensions: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """The prediction for one file (or waveform). With a timeline, `probabilities` are the `AGGREGATE` of `segments`
    (a dimensional model: `dimensions`, the mean of the segments' values)."""

    file: str
    duration: float
    label: Optional[str]
    probabilities: dict[str, float]
    segments: list[Segment] = field(default_factory=list)
    aggregate: Optional[str] = None
    dimensions: dict[str, float] = field(default_factory=dict)


@dataclass
class PredictionReport:
    """Predictions of all readable files, and the files that could not be read (path, reason)."""

    predictions: list[Prediction]
    failures: list[tuple[str, str]]


def find_audio_files(inputs: Iterable[Union[str, os.PathLike]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders (recursively, by audio extension, sorted); inputs that do not exist are failures."""
    files, failures = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = audio_files_under(path)
            if not found:
                failures.append((str(path), f"folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            failures.append((str(path), "no such file or folder"))
    return files, failures


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class EmotionClassifier:
    """A trained model (PyTorch, or an ONNX export under onnxruntime) with its feature extractor.

    Waveforms (16 kHz mono float32, as `load_audio` returns them) in, class probabilities out. Inputs are prepared
    as in training: the feature extractor per waveform, then `SERDataCollator` pads each batch with the extractor's
    `pad` and an attention mask. The PyTorch backend runs on `device` (default: a loaded model on the machine's
    accelerator if any, else the CPU; an in-memory model where it already is).
    """

    def __init__(
        self,
        model_or_path: Union[str, os.PathLike, PreTrainedModel],
        backend: Optional[str] = None,
        feature_extractor=None,
        threads: Optional[int] = None,
        device: Union[str, torch.device, None] = None,
    ):
        if backend is None:  # a folder from `hf-ser export-onnx` runs under onnxruntime, anything else under torch
            backend = "onnx" if is_onnx_folder(model_or_path) else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: use one of {BACKENDS}")
        if not isinstance(model_or_path, PreTrainedModel):
            check_model_reference(model_or_path)
        self.backend = backend
        if device is None and isinstance(model_or_path, PreTrainedModel):
            device = model_or_path.device  # an in-memory model stays where its owner put it
        self.device = resolve_device(device, backend)
        if backend == "onnx":
            from hf_ser.inference.onnx_export import OnnxSERModel

            if isinstance(model_or_path, PreTrainedModel):
                raise ValueError(
                    "the onnx backend takes the folder written by `hf-ser export-onnx`, not a model object"
                )
            self.model = OnnxSERModel(model_or_path, threads=threads)
            feature_extractor = feature_extractor or AutoFeatureExtractor.from_pretrained(model_or_path)
        elif isinstance(model_or_path, PreTrainedModel):
            if feature_extractor is None:
                raise ValueError("pass `feature_extractor` together with an in-memory model")
            self.model = model_or_path.eval()
        else:
            _refuse_onnx_only_folder(model_or_path)
            self.model, feature_extractor = load_model(model_or_path, feature_extractor)
        if backend == "torch":
            self.model.to(self.device)
        self.config = self.model.config
        self.clip_length = encodes_whisper_at_clip_length(self.config)
        self.feature_extractor = feature_extractor
        self.collator = SERDataCollator(self.feature_extractor)
        self.labels = [self.config.id2label[i] for i in range(len(self.config.id2label))]
        self.dimensional = getattr(self.config, "problem_type", None) == "regression"  # labels are dimensions
        self.sampling_rate = int(self.feature_extractor.sampling_rate)

    def logits(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Logits of one batch of waveforms (padded together), as the model gives them in evaluation mode."""
        # as evaluation prepares them (Whisper at clip length when the model encodes it so)
        features = clip_features(self.feature_extractor, list(waveforms), self.sampling_rate, None, self.clip_length)
        examples = [dict(zip(features, values)) for values in zip(*features.values())]
        batch = self.collator(examples)
        input_name = self.feature_extractor.model_input_names[0]
        if self.backend == "onnx":
            return self.model(batch[input_name].numpy(), batch["attention_mask"].numpy())
        with torch.inference_mode():
            batch = {key: value.to(self.device) for key, value in batch.items()}
            return self.model(**batch).logits.float().cpu().numpy()

    def probabilities(self, waveforms: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """`(len(waveforms), num_labels)` probabilities (a dimensional model: its values, no softmax); batches are
        formed by length, so little padding is computed."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        order = np.argsort([len(w) for w in waveforms], kind="stable")
        result = np.zeros((len(waveforms), len(self.labels)), dtype=np.float64)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            logits = self.logits([waveforms[i] for i in chunk]).astype(np.float64)
            result[chunk] = logits if self.dimensional else softmax(logits)
        return result

    def _named(self, probabilities: np.ndarray) -> tuple[Optional[str], dict[str, float]]:
        named = {label: float(p) for label, p in zip(self.labels, probabilities)}
        return (None, named) if self.dimensional else (self.labels[int(np.argmax(probabilities))], named)

    def _outputs(self, row: np.ndarray) -> dict:
        """`label`, `probabilities` and `dimensions` of one output row, for a `Prediction` or `Segment`."""
        label, named = self._named(row)
        if self.dimensional:
            return {"label": None, "probabilities": {}, "dimensions": named}
        return {"label": label, "probabilities": named}

    def timeline(self, waveform: np.ndarray, window: float, hop: float, batch_size: int = 8) -> list[Segment]:
        """Probabilities of `window`-second segments every `hop` seconds; the last segment ends at the end of the
        audio (SERCNN's `split_into_segments`). Audio shorter than one window is a single segment."""
        if window <= 0 or hop <= 0:
            raise ValueError(f"window={window} and hop={hop} must be positive (seconds)")
        # Splitting sample indices gives each segment's bounds as well as its samples.
        positions = split_into_segments(torch.arange(len(waveform), dtype=torch.int32), self.sampling_rate, window, hop)
        bounds = [(int(p[0]), int(p[-1]) + 1) for p in positions]
        probabilities = self.probabilities([waveform[start:end] for start, end in bounds], batch_size)
        segments = []
        for (start, end), row in zip(bounds, probabilities):
            segments.append(Segment(start / self.sampling_rate, end / self.sampling_rate, **self._outputs(row)))
        return segments

    def predict_waveform(
        self,
        waveform: np.ndarray,
        name: str = "<waveform>",
        window: Optional[float] = None,
        hop: Optional[float] = None,
        batch_size: int = 8,
    ) -> Prediction:
        duration = len(waveform) / self.sampling_rate
        if window is None:
            return Prediction(name, duration, **self._outputs(self.probabilities([waveform], batch_size)[0]))
        segments = self.timeline(waveform, window, hop if hop is not None else window, batch_size)
        mean = np.mean([[(s.dimensions or s.probabilities)[label] for label in self.labels] for s in segments], axis=0)
        aggregate = DIMENSIONAL_AGGREGATE if self.dimensional else AGGREGATE
        return Prediction(name, duration, segments=segments, aggregate=aggregate, **self._outputs(mean))

    def predict_files(
        self,
        inputs: Iterable[Union[str, os.PathLike]],
        window: Optional[float] = None,
        hop: Optional[float] = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> PredictionReport:
        """Predict every audio file under `inputs`; undecodable files become `failures`, not exceptions."""
        from tqdm.auto import tqdm

        files, failures = find_audio_files(inputs)
        predictions: dict[Path, Prediction] = {}
        bar = tqdm(total=len(files), desc="predict", unit="file", disable=not progress, file=sys.stderr)

        def decode(path: Path) -> Optional[np.ndarray]:
            try:
                return load_audio(path, self.sampling_rate)
            except AudioDecodeError as error:
                failures.append((str(path), str(error).removeprefix(f"{path}: ")))
                bar.update(1)
                return None

        if window is not None:  # one file at a time; its windows form the batches
            for path in files:
                waveform = decode(path)
                if waveform is not None:
                    predictions[path] = self.predict_waveform(waveform, str(path), window, hop, batch_size)
                    bar.update(1)
        else:  # files sorted by duration (header only), so each batch holds similar lengths
            durations = {}
            for path in files:
                try:
                    durations[path] = probe_audio(path).duration
                except AudioDecodeError:
                    durations[path] = 0.0  # decoding below reports it
            ordered = sorted(files, key=durations.__getitem__)
            for start in range(0, len(ordered), batch_size):
                chunk = [(path, decode(path)) for path in ordered[start : start + batch_size]]
                chunk = [(path, waveform) for path, waveform in chunk if waveform is not None]
                if not chunk:
                    continue
                probabilities = self.probabilities([waveform for _, waveform in chunk], batch_size)
                for (path, waveform), row in zip(chunk, probabilities):
                    duration = len(waveform) / self.sampling_rate
                    predictions[path] = Prediction(str(path), duration, **self._outputs(row))
                bar.update(len(chunk))
        bar.close()
        return PredictionReport([predictions[path] for path in files if path in predictions], failures)


def resolve_device(device: Union[str, torch.device, None], backend: str = "torch") -> torch.device:
    """The device inference runs on: the one asked for, else the machine's accelerator (CUDA, MPS, ...) if it has
    one, else the CPU. The onnx backend runs on the CPU only."""
    if backend == "onnx":
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device={str(device)!r}: the onnx backend runs on the CPU (onnxruntime's CPU provider)")
        return torch.device("cpu")
    if device is not None:
        return torch.device(device)
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator or torch.device("cpu")


def is_onnx_folder(model_or_path) -> bool:
    """A folder written by `hf-ser export-onnx`: `model.onnx` and no PyTorch weights."""
    if isinstance(model_or_path, PreTrainedModel):
        return False
    path = Path(model_or_path)
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin"))
    return path.is_dir() and (path / "model.onnx").is_file() and not weights


def _refuse_onnx_only_folder(model_or_path) -> None:
    if is_onnx_folder(model_or_path):
        raise ValueError(f"{model_or_path} holds an ONNX export and no PyTorch weights: run with `--backend onnx`")


def predict_timeline(
    model_or_path: Union[str, os.PathLike, PreTrainedModel, EmotionClassifier],
    audio: Union[str, os.PathLike, np.ndarray],
    window: float = 2.0,
    hop: float = 1.0,
    sampling_rate: Optional[int] = None,
    batch_size: int = 8,
    backend: str = "torch",
    feature_extractor=None,
) -> Prediction:
    """The emotion timeline of one recording, for notebooks.

    `audio` is a file path or a waveform (pass its `sampling_rate` if it is not the model's; it is resampled).
    Returns a `Prediction` whose `segments` hold `start`/`end` seconds and class probabilities, and whose
    `probabilities` are the mean of the segments' probabilities.
    """
    from hf_ser.data.audio import resample

    classifier = (
        model_or_path
        if isinstance(model_or_path, EmotionClassifier)
        else EmotionClassifier(model_or_path, backend=backend, feature_extractor=feature_extractor)
    )
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise ValueError(f"audio must be a mono 1-D waveform, got shape {audio.shape}")
        waveform = resample(audio, sampling_rate or classifier.sampling_rate, classifier.sampling_rate)
        name = "<waveform>"
    else:
        waveform, name = load_audio(audio, classifier.sampling_rate), str(audio)
    return classifier.predict_waveform(waveform, name, window, hop, batch_size)


# ---- output ---------------------------------------------------------------------------------------------------


def to_json(report: PredictionReport, labels: list[str]) -> str:
    return json.dumps(
        {
            "dimensions" if _is_dimensional(report) else "labels": labels,
            "predictions": [_without_empty(asdict(p)) for p in report.predictions],
            "failures": [{"file": file, "reason": reason} for file, reason in report.failures],
        },
        indent=2,
    )


def _without_empty(prediction: dict) -> dict:
    """Without unset fields (no timeline; a dimensional model's label and probabilities, a classifier's dimensions)."""
    return {
        key: [_without_empty(item) for item in value] if key == "segments" else value
        for key, value in prediction.items()
        if value not in (None, [], {})
    }


def _is_dimensional(report: PredictionReport) -> bool:
    return any(p.dimensions for p in report.predictions)


def to_csv(report: PredictionReport, labels: list[str]) -> str:
    """One row per file (`segment` = `all`) and, with a timeline, one row per segment (`segment` = 0, 1, ...); a
    dimensional model's rows have no `label` column, and a column of values per dimension."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    label_column = [] if _is_dimensional(report) else ["label"]
    writer.writerow(["file", "segment", "start", "end", *label_column, *labels])
    for p in report.predictions:
        rows = [("all", 0.0, round(p.duration, 4), p)] + [(i, s.start, s.end, s) for i, s in enumerate(p.segments)]
        for segment, start, end, item in rows:
            values = item.dimensions or item.probabilities
            label = [item.label] if label_column else []
            writer.writerow([p.file, segment, start, end, *label, *(values[name] for name in labels)])
    return buffer.getvalue()


def to_table(report: PredictionReport, labels: list[str]) -> str:
    width = max([len("file")] + [len(p.file) for p in report.predictions])
    dimensional = _is_dimensional(report)
    label_header = "" if dimensional else f"  {'label':<12}"
    header = f"{'file':<{width}}  {'time (s)':>13}{label_header}" + "".join(f"{label[:8]:>9}" for label in labels)
    lines = [header, "-" * len(header)]
    for p in report.predictions:
        rows = [(p.file, f"{0:6.2f}-{p.duration:6.2f}", p.label, p.dimensions or p.probabilities)]
        rows += [("", f"{s.start:6.2f}-{s.end:6.2f}", s.label, s.dimensions or s.probabilities) for s in p.segments]
        for file, span, label, values in rows:
            label_cell = "" if dimensional else f"  {label:<12}"
            lines.append(
                f"{file:<{width}}  {span:>13}{label_cell}" + "".join(f"{values[name]:9.3f}" for name in labels)
            )
    if any(p.segments for p in report.predictions):
        lines.append(f"(file rows with a timeline: {DIMENSIONAL_AGGREGATE if dimensional else AGGREGATE})")
    return "\n".join(lines) + "\n"


WRITERS = {"table": to_table, "json": to_json, "csv": to_csv}


def plot_timelines(report: PredictionReport, labels: list[str], path: Union[str, os.PathLike]) -> Path:
    """One panel per file: class probabilities over time, stacked (each segment drawn over its own span); a
    dimensional model's values over time, one line per dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predictions = [p for p in report.predictions if p.segments]
    if not predictions:
        raise ValueError("nothing to plot: the timeline plot needs --window (and at least one readable file)")
    figure, axes = plt.subplots(len(predictions), 1, figsize=(10, 2.2 * len(predictions) + 0.6), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for axis, prediction in zip(axes[:, 0], predictions):
        # Each segment's probabilities sit at its centre; the first and last hold out to the ends of the audio.
        segments = [prediction.segments[0], *prediction.segments, prediction.segments[-1]]
        times = [0.0] + [(s.start + s.end) / 2 for s in prediction.segments] + [prediction.duration]
        curves = [[(s.dimensions or s.probabilities)[label] for s in segments] for label in labels]
        axis.set_xlim(0, prediction.duration)
        if prediction.dimensions:
            for curve, label, color in zip(curves, labels, colors):
                axis.plot(times, curve, label=label, color=color)
            axis.set_ylabel("value")
            means = ", ".join(f"{label} {prediction.dimensions[label]:.2f}" for label in labels)
            axis.set_title(f"{Path(prediction.file).name}: {means}", fontsize=9, loc="left")
        else:
            axis.stackplot(times, curves, labels=labels, colors=colors[: len(labels)], alpha=0.85)
            axis.set_ylim(0, 1)
            axis.set_ylabel("probability")
            axis.set_title(f"{Path(prediction.file).name}: {prediction.label}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-ser predict",
        description="Predict emotions of audio files (any format, rate and channel count) with a trained model.",
    )
    parser.add_argument("model", help="model folder or Hub id; with --backend onnx, a folder from `hf-ser export-onnx`")
    parser.add_argument("audio", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--window", type=float, help="timeline: window length in seconds")
    parser.add_argument("--hop", type=float, help="timeline: step between window starts in seconds (default: --window)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", help="write the output to this file instead of stdout")
    parser.add_argument("--plot", help="write a PNG of the class probabilities over time (needs --window)")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per forward pass (default: 8)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="torch or onnx (onnxruntime); default: onnx for a folder from `hf-ser export-onnx`, else torch",
    )
    parser.add_argument(
        "--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: the accelerator if any, else cpu)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: the library's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.hop is not None and args.window is None:
        parser.error("--hop needs --window")
    if args.plot and args.window is None:
        parser.error("--plot draws a timeline: add --window (and optionally --hop)")
    if args.threads and args.backend != "onnx":
        torch.set_num_threads(args.threads)

    classifier = EmotionClassifier(args.model, backend=args.backend, threads=args.threads, device=args.device)
    if args.backend is None and classifier.backend == "onnx":
        print(
            f"{args.model} is an ONNX export (model.onnx from hf-ser export-onnx): using --backend onnx",
            file=sys.stderr,
        )
    report = classifier.predict_files(
        args.audio, args.window, args.hop, args.batch_size, progress=not args.no_progress and sys.stderr.isatty()
    )
    text = WRITERS[args.format](report, classifier.labels)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    if args.plot and report.predictions:
        print(f"timeline plot: {plot_timelines(report, classifier.labels, args.plot)}", file=sys.stderr)
    for file, reason in report.failures:
        print(f"skipped {file}: {reason}", file=sys.stderr)
    print(
        f"{len(report.predictions)} file(s) predicted, {len(report.failures)} skipped"
        + (f" (written to {args.output})" if args.output else ""),
        file=sys.stderr,
    )
    return 0 if report.predictions else 1
