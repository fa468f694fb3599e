"""The one place audio is read: decode with soundfile, downmix, resample with soxr, to 16 kHz mono float32."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile
import soxr

SAMPLING_RATE = 16_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


def audio_files_under(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively) with an audio extension, sorted: how corpora and `hf-ser predict`
    find audio."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


class AudioDecodeError(ValueError):
    """A file that cannot be used as speech; the message names the file and the reason."""


def load_audio(path: str | os.PathLike | BinaryIO, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Decode any common audio file to a mono float32 waveform at `sampling_rate`.

    Raises `AudioDecodeError` naming the file for anything that cannot be decoded or holds non-finite samples.
    """
    try:
        source = path if hasattr(path, "read") else os.fspath(path)
        samples, source_rate = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError or TypeError depending on the damage
        raise AudioDecodeError(f"{path}: cannot decode audio ({error})") from error
    if samples.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no samples")
    waveform = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(waveform).all():
        raise AudioDecodeError(f"{path}: the audio holds NaN or infinite samples")
    return resample(waveform, source_rate, sampling_rate)


def resample(waveform: np.ndarray, source_rate: int, target_rate: int = SAMPLING_RATE) -> np.ndarray:
    waveform = np.asarray(waveform, dtype=np.float32)
    if source_rate == target_rate:
        return np.ascontiguousarray(waveform)
    return soxr.resample(waveform, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    sampling_rate: int
    channels: int


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Duration and format from the file header alone (cheap: no decoding)."""
    try:
        info = soundfile.info(os.fspath(path))
    except Exception as error:
        raise AudioDecodeError(f"{path}: cannot read the audio header ({error})") from error
    return AudioInfo(duration=float(info.duration), sampling_rate=int(info.samplerate), channels=int(info.channels))


def crop_or_pad(
    waveform: np.ndarray,
    num_samples: int,
    random: bool = False,
    pad: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A window of at most `num_samples`: at a random offset for training, centred otherwise.

    The random offset comes from `rng` (training passes a generator keyed by seed, epoch and file, so crops are
    reproducible across resumes), else from NumPy's global generator. Shorter clips come back as they are (the
    collator pads each batch to its longest clip) unless `pad` is set, which zero-pads them to exactly `num_samples`
    (the seed's fixed-length input).
    """
    length = len(waveform)
    if length > num_samples:
        if not random:
            start = (length - num_samples) // 2
        elif rng is not None:
            start = int(rng.integers(0, length - num_samples + 1))
        else:
            start = np.random.randint(0, length - num_samples + 1)
        return waveform[start : start + num_samples]
    if pad and length < num_samples:
        return np.pad(waveform, (0, num_samples - length))
    return waveform
