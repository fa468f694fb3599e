"""A small generated smoke corpus for the demo recipe: speech-like signals whose prosody depends on the emotion.

It is NOT speech and results on it say nothing about real emotion recognition; it exists so that the whole pipeline
runs on a fresh machine without a download. Each "utterance" is a glottal-like harmonic source with a pitch contour,
syllable-rate amplitude modulation and two formant resonances; emotions differ in mean pitch, pitch range, energy,
speaking rate and breathiness, and every speaker has an own voice (base pitch and formants).
Layout: `<root>/<emotion>/spk<NN>_<emotion>_<index>.wav` (an `audiofolder` with speaker pattern `spk(\\d+)`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile

DEMO_SPEAKER_PATTERN = r"spk(?P<speaker>\d+)_"
# emotion: (pitch factor, pitch range in semitones, energy, syllables per second, breathiness)
PROSODY = {
    "neutral": (1.00, 1.5, 0.30, 4.0, 0.02),
    "happy": (1.25, 5.0, 0.50, 5.0, 0.03),
    "sad": (0.85, 0.8, 0.15, 2.5, 0.08),
    "angry": (1.15, 3.0, 0.80, 5.5, 0.01),
}


def _resonate(signal: np.ndarray, frequency: float, bandwidth: float, sampling_rate: int) -> np.ndarray:
    from scipy.signal import lfilter

    radius = np.exp(-np.pi * bandwidth / sampling_rate)
    theta = 2 * np.pi * frequency / sampling_rate
    return lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], signal)


def synthesize(emotion: str, base_pitch: float, formants: tuple, rng: np.random.Generator, sampling_rate: int = 16_000):
    pitch_factor, pitch_range, energy, rate, breath = PROSODY[emotion]
    duration = rng.uniform(1.5, 3.0)
    t = np.arange(int(duration * sampling_rate)) / sampling_rate
    contour = pitch_range * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 6.3))
    f0 = base_pitch * pitch_factor * 2 ** ((contour + rng.normal(0, 0.3)) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    source = sum(np.sin(k * phase) / k for k in range(1, 16))
    syllables = 0.5 * (1 - np.cos(2 * np.pi * rate * rng.uniform(0.85, 1.15) * t))
    voiced = _resonate(source, formants[0], 90, sampling_rate) + 0.6 * _resonate(
        source, formants[1], 120, sampling_rate
    )
    signal = voiced * syllables + breath * rng.standard_normal(len(t))
    signal *= energy * rng.uniform(0.8, 1.2) / (np.abs(signal).max() + 1e-9)
    return signal.astype(np.float32)


def generate_demo_corpus(root: str | Path, speakers: int = 8, per_emotion: int = 10, seed: int = 0) -> Path:
    """Write the corpus under `root` (skipped when it is already complete); returns `root`.

    The files are written to a private folder beside `root` that is then renamed to `root`, so a reader never sees a
    half-written corpus and two commands generating it at once do not interleave (the corpus is deterministic: the
    one renamed first is kept, the other discarded).
    """
    root = Path(root)
    expected = speakers * per_emotion * len(PROSODY)

    def complete() -> bool:
        return root.is_dir() and len(list(root.glob("*/*.wav"))) == expected

    if complete():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        for speaker in range(1, speakers + 1):
            base_pitch = rng.uniform(95, 230)
            formants = (rng.uniform(450, 800), rng.uniform(1100, 1900))
            for emotion in PROSODY:
                (staging / emotion).mkdir(exist_ok=True)
                for index in range(per_emotion):
                    waveform = synthesize(emotion, base_pitch, formants, rng)
                    soundfile.write(staging / emotion / f"spk{speaker:02d}_{emotion}_{index:02d}.wav", waveform, 16_000)
        if root.is_dir() and not complete():  # left half-written by a version that wrote in place
            shutil.rmtree(root)
        try:
            os.rename(staging, root)
        except OSError:  # another process renamed its copy first
            if not complete():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
