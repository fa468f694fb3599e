"""`hf-ser demo MODEL`: the model's browser demo page (Gradio), served on this machine.

    hf-ser demo MODEL [--host 127.0.0.1] [--port 7860] [--window S --hop S] [--device cpu]

The page is the app a Space runs (`templates/app.py`, uploaded by `hf-ser push` with `templates/requirements.txt`);
here it runs on hf-ser's own code: `hf_ser.data.audio.load_audio` decodes the upload, `EmotionClassifier` predicts the
whole recording (the bars: what `hf-ser predict MODEL FILE` prints; a dimensional model's values, as bars and a table)
and its windows, and `hf_ser.inference.predict.plot_timelines` draws the timeline. Gradio comes with the `demo` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import uuid
from pathlib import Path
from types import ModuleType
from typing import Optional

import numpy as np

from hf_ser.data.audio import load_audio
from hf_ser.inference.predict import EmotionClassifier, Prediction, PredictionReport, Segment, plot_timelines

TEMPLATES_DIR = Path(__file__).parent / "templates"
APP_FILE = TEMPLATES_DIR / "app.py"
REQUIREMENTS_FILE = TEMPLATES_DIR / "requirements.txt"
SPACE_GRADIO_VERSION = "6.31.0"  # the Space card's sdk_version: the gradio the app was tested with


def load_app() -> ModuleType:
    """The demo app module (`templates/app.py`; gradio is imported when it builds the page)."""
    spec = importlib.util.spec_from_file_location("hf_ser_demo_app", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HfSerBackend:
    """What the demo page calls, on hf-ser's decoding, prediction and plotting."""

    def __init__(self, classifier: EmotionClassifier, plot_dir: Path):
        self.classifier, self.plot_dir = classifier, Path(plot_dir)
        self.labels, self.sampling_rate = classifier.labels, classifier.sampling_rate
        self.dimensional = classifier.dimensional  # `probabilities` are then the dimensions' values
        self.probabilities, self.timeline = classifier.probabilities, classifier.timeline

    def decode(self, path: str) -> np.ndarray:
        return load_audio(path, self.sampling_rate)  # AudioDecodeError (a ValueError) for what is not audio

    def plot_timeline(self, name: str, duration: float, outputs: dict[str, float], segments: list[Segment]) -> str:
        if self.dimensional:  # plot_timelines draws a line per dimension, their values in the title
            prediction = Prediction(name, duration, None, {}, segments, dimensions=outputs)
        else:
            prediction = Prediction(name, duration, max(outputs, key=outputs.get), outputs, segments)
        path = self.plot_dir / f"{uuid.uuid4().hex}.png"
        return str(plot_timelines(PredictionReport([prediction], []), self.labels, path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-ser demo",
        description="Serve a browser demo of a model: upload or record speech, see the emotion probabilities (a "
        "dimensional model: its values) and, for longer recordings, the emotion timeline. Needs the `demo` extra "
        "(gradio).",
    )
    parser.add_argument("model", help="model folder, LoRA run folder or Hub id")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--window", type=float, help="timeline window in seconds (default: the app's, 2)")
    parser.add_argument("--hop", type=float, help="step between timeline windows in seconds (default: the app's, 1)")
    parser.add_argument("--device", help="torch device (default: the accelerator if any, else cpu)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import gradio  # noqa: F401  (the `demo` extra: say so before the model is loaded, not after)

    app = load_app()
    window = args.window if args.window is not None else app.WINDOW_SECONDS
    hop = args.hop if args.hop is not None else app.HOP_SECONDS
    if window <= 0 or hop <= 0:
        raise ValueError(f"--window {window} and --hop {hop} must be positive (seconds)")
    classifier = EmotionClassifier(args.model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="hf_ser_demo_") as plot_dir:
        title = f"Speech emotion recognition: {Path(args.model).name}"
        demo = app.build_demo(HfSerBackend(classifier, plot_dir), title, window, hop)
        demo.launch(server_name=args.host, server_port=args.port)
    return 0
