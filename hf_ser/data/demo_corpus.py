"""A small generated smoke corpus for the demo recipe: speech-like signals whose voice quality depends on the emotion.

It is NOT speech and results on it say nothing about real emotion recognition; it exists so that the whole pipeline
runs on a fresh machine without a download, and so that its held-out speakers test what matters: generalising to
voices never heard. Each "utterance" is a glottal-like harmonic source with a pitch contour, jitter, syllable-rate
amplitude modulation, breath noise and two formant resonances.

The emotion cues are relative, so they survive a feature extractor's per-utterance normalisation and do not depend on
who speaks: speaking rate, pitch range and contour direction (in semitones around the speaker's own pitch), spectral
tilt, jitter, breathiness and how abrupt the syllables are. Loudness is not a cue (normalisation removes it) and
neither is absolute pitch: every speaker has an own base pitch, formants and habits (a little faster or slower,
brighter or darker, breathier) that are the same for all four emotions, so a model that learns the speaker instead of
the emotion fails on the held-out speakers.
Layout: `<root>/<emotion>/spk<NN>_<emotion>_<index>.wav` (an `audiofolder` with speaker pattern `spk(\\d+)`), plus
`<root>/demo_corpus.json`, which names the generator version the files were made with.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

DEMO_SPEAKER_PATTERN = r"spk(?P<speaker>\d+)_"
# Bump when the signals change, so a corpus cached by an older version is generated again.
GENERATOR_VERSION = 2
MARKER_FILE = "demo_corpus.json"
# emotion: (syllables per second, pitch range in semitones, contour slope in semitones per second,
#           spectral tilt (harmonic k has amplitude k ** -tilt), jitter (relative f0 noise), breathiness
#           (noise RMS relative to the voiced RMS), syllable sharpness (exponent of the syllable envelope))
PROSODY = {
    "neutral": (3.2, 1.0, 0.0, 1.6, 0.005, 0.10, 1.0),
    "happy": (5.0, 7.0, 4.0, 1.0, 0.008, 0.05, 1.0),
    "sad": (2.2, 1.0, -3.0, 2.4, 0.010, 0.35, 0.6),
    "angry": (6.5, 3.5, -1.0, 0.4, 0.030, 0.03, 3.0),
}
MAX_HARMONIC_HZ = 5000.0


@dataclass(frozen=True)
class Voice:
    """One speaker's habits, shared by all their emotions: multipliers and offsets of the emotion's cues."""

    rate: float = 1.0
    tilt: float = 0.0
    breath: float = 1.0
    pitch_range: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Voice":
        return cls(
            rate=rng.uniform(0.9, 1.1),
            tilt=rng.uniform(-0.1, 0.1),
            breath=rng.uniform(0.75, 1.35),
            pitch_range=rng.uniform(0.8, 1.2),
        )


def _resonate(signal: np.ndarray, frequency: float, bandwidth: float, sampling_rate: int) -> np.ndarray:
    from scipy.signal import lfilter

    radius = np.exp(-np.pi * bandwidth / sampling_rate)
    theta = 2 * np.pi * frequency / sampling_rate
    return lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], signal)


def _held_noise(rng: np.random.Generator, length: int, block: int) -> np.ndarray:
    """White noise held constant over blocks of `block` samples (a cycle-to-cycle perturbation)."""
    return np.repeat(rng.standard_normal(length // block + 1), block)[:length]


def _harmonic_source(phase: np.ndarray, count: int, tilt: float) -> np.ndarray:
    """Sum of harmonics k = 1..count with amplitude k ** -tilt; sin(k x) by the recurrence
    2 cos(x) sin((k-1) x) - sin((k-2) x), which is several times faster than one sin per harmonic."""
    twice_cos = 2 * np.cos(phase)
    previous, current = np.zeros_like(phase), np.sin(phase)
    source = current.copy()
    for k in range(2, count + 1):
        previous, current = current, twice_cos * current - previous
        source += k**-tilt * current
    return source


def synthesize(
    emotion: str,
    base_pitch: float,
    formants: tuple,
    rng: np.random.Generator,
    sampling_rate: int = 16_000,
    voice: Voice = Voice(),
) -> np.ndarray:
    """One utterance of `emotion` by a speaker with this base pitch (Hz), two formants (Hz) and `voice`."""
    rate, pitch_range, slope, tilt, jitter, breath, sharpness = PROSODY[emotion]
    duration = rng.uniform(1.5, 3.0)
    n = int(duration * sampling_rate)
    t = np.arange(n) / sampling_rate
    semitones = voice.pitch_range * pitch_range * np.sin(2 * np.pi * rng.uniform(0.4, 0.9) * t + rng.uniform(0, 6.3))
    semitones += slope * (t - duration / 2) + rng.normal(0, 0.5)
    f0 = base_pitch * 2 ** (semitones / 12)
    f0 *= 1 + jitter * _held_noise(rng, n, max(1, int(sampling_rate / base_pitch)))
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    source = _harmonic_source(phase, max(2, int(MAX_HARMONIC_HZ / base_pitch)), tilt + voice.tilt)
    voiced = _resonate(source, formants[0], 90, sampling_rate) + 0.6 * _resonate(
        source, formants[1], 120, sampling_rate
    )
    syllable_rate = rate * voice.rate * rng.uniform(0.92, 1.08)
    syllables = (0.5 * (1 - np.cos(2 * np.pi * syllable_rate * t))) ** sharpness
    voiced *= syllables
    noise = _resonate(rng.standard_normal(n), formants[1], 800, sampling_rate) * syllables
    noise *= breath * voice.breath * np.std(voiced) / (np.std(noise) + 1e-9)
    signal = voiced + noise
    # Loudness carries no emotion here: per-utterance normalisation would remove it anyway.
    signal *= rng.uniform(0.3, 0.8) / (np.abs(signal).max() + 1e-9)
    return signal.astype(np.float32)


def _check_is_demo_corpus(root: Path) -> None:
    """Refuse to replace a folder that holds anything but demo clips (a `--data_dir` pointed at the wrong folder)."""
    foreign = [
        path
        for path in root.iterdir()
        if path.name != MARKER_FILE
        and not (path.is_dir() and path.name in PROSODY and all(p.suffix == ".wav" for p in path.iterdir()))
    ]
    if foreign:
        raise ValueError(
            f"{root} is not a demo corpus (it holds {foreign[0].name}); the demo corpus is generated into its own "
            "folder: give --data_dir a new or empty folder, or drop it to use ~/.cache/hf_ser/demo_corpus"
        )


def _move_aside(root: Path) -> None:
    """Delete the folder `root` safely against another writer doing the same: it is first renamed into a fresh
    folder beside it (atomic: of two writers one moves it, the other finds it gone), then deleted from there. Deleting
    it in place let two writers' `rmtree` race over the same files."""
    trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.stale.", dir=root.parent))
    try:
        os.rename(root, trash / root.name)
    except FileNotFoundError:
        pass  # the other writer moved it first
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def generate_demo_corpus(root: str | Path, speakers: int = 16, per_emotion: int = 6, seed: int = 0) -> Path:
    """Write the corpus under `root` (skipped when it is already complete and of this generator version); returns
    `root`.

    The files are written to a private folder beside `root` that is then renamed to `root`, so a reader never sees a
    half-written corpus and two commands generating it at once do not interleave (the corpus is deterministic: the
    one renamed first is kept, the other discarded).
    """
    root = Path(root)
    expected = speakers * per_emotion * len(PROSODY)
    marker = {"generator_version": GENERATOR_VERSION, "speakers": speakers, "per_emotion": per_emotion, "seed": seed}

    def complete() -> bool:
        try:
            written = json.loads((root / MARKER_FILE).read_text())
        except (OSError, ValueError):
            return False
        return {key: written.get(key) for key in marker} == marker and len(list(root.glob("*/*.wav"))) == expected

    if complete():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        voices = {}
        for speaker in range(1, speakers + 1):
            base_pitch = rng.uniform(95, 230)
            formants = (rng.uniform(450, 800), rng.uniform(1100, 1900))
            voice = Voice.draw(rng)
            voices[f"{speaker:02d}"] = {"base_pitch": base_pitch, "formants": formants, **asdict(voice)}
            for emotion in PROSODY:
                (staging / emotion).mkdir(exist_ok=True)
                for index in range(per_emotion):
                    waveform = synthesize(emotion, base_pitch, formants, rng, voice=voice)
                    soundfile.write(staging / emotion / f"spk{speaker:02d}_{emotion}_{index:02d}.wav", waveform, 16_000)
        (staging / MARKER_FILE).write_text(json.dumps({**marker, "voices": voices}, indent=1))
        if root.is_dir() and not complete():  # an older version's corpus, or one left half-written in place
            try:
                _check_is_demo_corpus(root)
            except FileNotFoundError:
                pass  # another writer moved it away meanwhile
            else:
                _move_aside(root)
        try:
            os.rename(staging, root)
        except OSError:  # another process renamed its copy first
            if not complete():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
