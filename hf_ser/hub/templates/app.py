"""A browser demo of an hf-ser speech emotion recognition model (Gradio): upload or record speech, see the class
probabilities (a dimensional model: the value of each dimension) and, for audio longer than one window, the emotion
timeline.

One file, two ways to run it:
- `hf-ser demo MODEL` builds this page with hf-ser's own decoding, prediction and timeline plot (`build_demo`);
- on a Hugging Face Space (`hf-ser push --space`), or as `python app.py` next to a downloaded model, it needs only the
  packages of requirements.txt: the model loads with transformers (`trust_remote_code=True`, the model code travels in
  the model repository) and audio is decoded with soundfile and resampled with soxr, as hf-ser does.
  The model is `$HF_SER_MODEL` (a Hub id or folder; `hf-ser push --space` sets this Space variable), else this folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import gradio as gr

WINDOW_SECONDS = 2.0  # audio longer than one window gets a timeline: windows of this length ...
HOP_SECONDS = 1.0  # ... starting every HOP_SECONDS; the last one ends at the end of the audio


class UnreadableAudio(ValueError):
    """An upload that is not audio the demo can decode."""


def analyse(backend, path: str, window: float, hop: float) -> tuple[dict[str, float], str | None]:
    """Class probabilities of the whole recording (a dimensional model: its values) and, when it is longer than
    `window`, a timeline PNG.

    `backend` decodes (`decode(path)`: 1-D waveform at `backend.sampling_rate`, ValueError if unreadable), predicts
    (`probabilities(waveforms)`, `timeline(waveform, window, hop)`; `backend.dimensional`: values, not probabilities)
    and draws (`plot_timeline`)."""
    waveform = backend.decode(path)
    outputs = dict(zip(backend.labels, map(float, backend.probabilities([waveform])[0])))
    if len(waveform) <= window * backend.sampling_rate:
        return outputs, None
    duration = len(waveform) / backend.sampling_rate
    return outputs, backend.plot_timeline(Path(path).name, duration, outputs, backend.timeline(waveform, window, hop))


def values_table(values: dict[str, float]) -> str:
    """A dimensional model's values as a one-row Markdown table, to the precision `hf-ser predict` prints them."""
    names, cells = " | ".join(values), " | ".join(f"{value:.3f}" for value in values.values())
    return f"| {names} |\n|{'---:|' * len(values)}\n| {cells} |\n"


def build_demo(backend, title: str, window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS) -> gr.Blocks:
    """The page: an audio input (upload or microphone), the class probabilities as bars (a dimensional model: the
    value of each dimension as bars and as a table), the timeline image."""
    import gradio as gr  # here, so that the backend below can be used (and tested) without gradio

    dimensional = backend.dimensional

    def predict(path):
        if path is None:  # the input was cleared
            cleared = (None, "") if dimensional else (None,)
            return *cleared, gr.update(value=None, visible=False)
        try:
            outputs, timeline = analyse(backend, path, window, hop)
        except ValueError as error:  # shown on the page as a message, not a traceback
            name = Path(path).name  # the server's temporary path would tell the visitor nothing
            reason = str(error).removeprefix(f"{path}: ").replace(path, name)
            raise gr.Error(f"{name} is not audio this demo can read: {reason}") from error
        if dimensional:
            import pandas as pd  # gradio's own dependency, the table its bar plot reads

            bars = pd.DataFrame({"dimension": list(outputs), "value": list(outputs.values())})
            shown = (bars, values_table(outputs))
        else:
            shown = (outputs,)
        return *shown, gr.update(value=timeline, visible=timeline is not None)

    names = ", ".join(backend.labels)
    if dimensional:
        what = f"Dimensions: {names} (the model's values, on the scale it was trained on)"
    else:
        what = f"Emotions: {names}"
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}\nUpload or record speech. {what}. Recordings longer than "
            f"{window:g} s also get a timeline ({window:g} s windows every {hop:g} s)."
        )
        with gr.Row():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech")
            if dimensional:
                with gr.Column():
                    bars = gr.BarPlot(
                        x="dimension",
                        y="value",
                        sort=backend.labels,
                        label="Dimensions",
                        height=220,
                        elem_id="dimension_bars",
                    )
                    values = gr.Markdown(elem_id="dimensions")
                shown = [bars, values]
            else:
                shown = [gr.Label(num_top_classes=len(backend.labels), label="Emotion")]
        timeline = gr.Image(
            type="filepath", label="Emotion timeline", show_label=False, visible=False, elem_id="timeline"
        )
        audio.change(predict, inputs=audio, outputs=[*shown, timeline])
    return demo


class TransformersBackend:
    """The model with transformers, soundfile and soxr only (no hf-ser): what a Space runs."""

    def __init__(self, model: str):
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.torch = torch
        self.model = AutoModelForAudioClassification.from_pretrained(
            model, trust_remote_code=True, use_safetensors=True
        ).eval()
        self.extractor = AutoFeatureExtractor.from_pretrained(model)
        self.sampling_rate = int(self.extractor.sampling_rate)
        self.labels = [self.model.config.id2label[i] for i in range(len(self.model.config.id2label))]
        # a dimensional model (hf-ser's `task: dimensional`): its outputs are the dimensions' values, no logits
        self.dimensional = getattr(self.model.config, "problem_type", None) == "regression"

    def decode(self, path: str) -> np.ndarray:
        import soundfile
        import soxr

        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except Exception as error:  # soundfile's error type depends on the damage
            raise UnreadableAudio(f"cannot decode audio ({error})") from error
        if samples.shape[0] == 0 or not np.isfinite(samples).all():
            raise UnreadableAudio("the file holds no samples, or non-finite ones")
        waveform = samples.mean(axis=1)
        if rate == self.sampling_rate:
            return waveform
        return soxr.resample(waveform, rate, self.sampling_rate, quality="HQ").astype(np.float32)

    def probabilities(self, waveforms: list[np.ndarray]) -> np.ndarray:
        rows = []
        for waveform in waveforms:  # one clip per forward pass: no padding to mask
            inputs = self.extractor(
                waveform, sampling_rate=self.sampling_rate, return_attention_mask=True, return_tensors="pt"
            )
            with self.torch.inference_mode():
                outputs = self.model(**inputs).logits[0].double()
            rows.append((outputs if self.dimensional else outputs.softmax(-1)).numpy())
        return np.stack(rows)

    def timeline(self, waveform: np.ndarray, window: float, hop: float) -> list[dict]:
        # as hf-ser's `split_into_segments`: audio shorter than one window is one segment
        length, step = min(round(window * self.sampling_rate), len(waveform)), round(hop * self.sampling_rate)
        starts = list(range(0, len(waveform) - length + 1, step))
        if starts[-1] + length < len(waveform):
            starts.append(len(waveform) - length)  # the last window ends at the end of the audio
        rows = self.probabilities([waveform[start : start + length] for start in starts])
        return [
            {"start": start / self.sampling_rate, "end": (start + length) / self.sampling_rate, "probabilities": row}
            for start, row in zip(starts, rows)
        ]

    def plot_timeline(self, name: str, duration: float, outputs: dict[str, float], segments: list[dict]) -> str:
        """The timeline PNG: class probabilities stacked, or a dimensional model's values, one line per dimension."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # each window's outputs at its centre, the first and last held out to the ends of the audio
        times = [0.0, *((s["start"] + s["end"]) / 2 for s in segments), duration]
        curves = np.array([s["probabilities"] for s in [segments[0], *segments, segments[-1]]]).T
        figure, axis = plt.subplots(figsize=(10, 2.8))
        if self.dimensional:
            for curve, label in zip(curves, self.labels):
                axis.plot(times, curve, label=label)
            title = ", ".join(f"{label} {value:.2f}" for label, value in outputs.items())
            axis.set(xlim=(0, duration), xlabel="time (s)", ylabel="value", title=f"{name}: {title}")
        else:
            axis.stackplot(times, curves, labels=self.labels, alpha=0.85)
            title = max(outputs, key=outputs.get)
            axis.set(xlim=(0, duration), ylim=(0, 1), xlabel="time (s)", ylabel="probability", title=f"{name}: {title}")
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        figure.tight_layout()
        path = os.path.join(tempfile.mkdtemp(prefix="timeline_"), "timeline.png")
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path


def model_source() -> str:
    """The model to serve: `$HF_SER_MODEL` (a Hub id or folder), else the folder this file is in."""
    return os.environ.get("HF_SER_MODEL") or str(Path(__file__).resolve().parent)


if __name__ == "__main__":
    model = model_source()
    build_demo(TransformersBackend(model), title=f"Speech emotion recognition: {Path(model).name}").launch()
