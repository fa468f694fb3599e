"""Cheap tempo and pitch changes of a mono waveform, and the TimeStretch and PitchShift transforms that use them: the
`fast_phase_vocoder` and `soxr_speed` methods of a recipe's augmentations (`hf_ser.data.augment`).

- `phase_vocoder_stretch`: librosa's phase vocoder (`librosa.effects.time_stretch`, audiomentations'
  `librosa_phase_vocoder`: the same 2048-sample Hann frames, 512-sample hop, linear magnitude interpolation and phase
  accumulation), with the frame loop replaced by array operations. The phase is accumulated as a running product of
  unit phasors instead of a sum of wrapped angles: the same result (a phasor only sees its angle modulo 2 pi) without
  an arctangent per bin, and without librosa's float32 phase drift. It sounds like librosa's: the known character of
  a phase vocoder without phase locking, a slightly reverberant, "phasey" smearing of transients that grows with the
  distance of the rate from 1 (not judged by listening here).
- `speed_perturb`: resampling with soxr as if the clip had been recorded at `factor` times the sampling rate (Kaldi's
  speed perturbation): tempo and pitch change together by the same factor, like a tape played faster; no frame
  artefacts at all, but it is not a pitch-preserving stretch.
- `pitch_shift`: librosa's recipe (stretch by the inverse factor, then resample back to the original length) on top of
  the two above.
"""

from __future__ import annotations

import threading

import audiomentations
import numpy as np
import scipy.fft
import soxr

N_FFT = 2048  # librosa.stft's defaults, which librosa.effects.time_stretch uses
HOP = N_FFT // 4
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as scipy.signal.get_window("hann", N_FFT)


class _Workspace(threading.local):
    """Work arrays kept between calls (one set per thread), grown to the largest clip seen. A phase vocoder call
    needs ~15 MB of temporaries for a 6 s clip; allocated afresh, glibc hands them back to the OS after each call
    and every page is faulted in and zeroed again on the next: about half of the call's CPU time, as measured here
    (TimeStretch + PitchShift on a 6 s clip, 26.5 against 12.2 ms with glibc told to keep freed memory)."""

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = int(np.prod(shape))
        buffer = self.buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[name] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


_workspace = _Workspace()


def phase_vocoder_stretch(waveform: np.ndarray, rate: float) -> np.ndarray:
    """`waveform` played `rate` times as fast at the same pitch: float32, `round(len / rate)` samples."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    work = _workspace.array
    waveform = np.asarray(waveform, dtype=np.float32)
    length = int(round(len(waveform) / rate))
    padded = np.pad(waveform, N_FFT // 2)  # librosa.stft(center=True, pad_mode="constant"): at least one frame
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    # Two zero frames after the last, as librosa's phase vocoder appends, so the last steps interpolate towards 0.
    windowed = work("windowed", (n_frames + 2, N_FFT), np.float32)
    windowed[-2:] = 0.0
    np.multiply(np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames], _WINDOW, out=windowed[:-2])
    spectrum = scipy.fft.rfft(windowed, axis=1)  # (frames, bins), complex64
    # A tiny real offset gives silent bins angle 0 (librosa's np.angle(0)) and a defined phasor; it changes no
    # other bin at float32 precision.
    spectrum.real += 1e-30
    magnitude = np.abs(spectrum, out=work("magnitude", spectrum.shape, np.float32))
    phasor = spectrum
    phasor.view(np.float32).reshape(*spectrum.shape, 2)[...] /= magnitude[..., None]  # in place: unit phasors

    steps = np.arange(0, n_frames, rate, dtype=np.float64)
    left = steps.astype(np.intp)
    shape = (len(steps), spectrum.shape[1])
    # magnitude interpolated linearly between the two input frames around each step
    lower = np.take(magnitude, left, axis=0, out=work("lower", shape, np.float32))
    stretched = np.take(magnitude, left + 1, axis=0, out=work("stretched", shape, np.float32))
    stretched -= lower
    stretched *= (steps - left).astype(np.float32)[:, None]
    stretched += lower
    # the phase advance exp(i (angle[t + 1] - angle[t])) between those frames, accumulated as a running product
    advance = np.take(phasor, left + 1, axis=0, out=work("advance", shape, np.complex64))
    phase = np.take(phasor, left, axis=0, out=work("phase", shape, np.complex64))
    advance *= np.conjugate(phase, out=phase)
    phase[0] = phasor[0]
    for index in range(1, len(phase)):  # ~200 rows per 6 s clip: one vector operation each
        np.multiply(phase[index - 1], advance[index - 1], out=phase[index])
    phase.view(np.float32).reshape(*shape, 2)[...] *= stretched[..., None]
    return _overlap_add(scipy.fft.irfft(phase, n=N_FFT, axis=1).astype(np.float32, copy=False), length)


def _overlap_add(frames: np.ndarray, length: int) -> np.ndarray:
    """librosa.istft(center=True, length=length) of already inverse-transformed frames: window, overlap-add, divide
    by the summed squared window, drop the centring pad, trim or zero-pad to `length`."""
    count, overlap = len(frames), N_FFT // HOP
    frames *= _WINDOW
    signal = _workspace.array("signal", (HOP * (count - 1 + overlap),), np.float32)
    norm = _workspace.array("norm", signal.shape, np.float32)
    signal[:] = 0.0
    norm[:] = 0.0
    squared = _WINDOW**2
    for part in range(overlap):  # part k of frame t lands at hop t + k: one strided add per part
        block, span = slice(part * HOP, (part + 1) * HOP), slice(part * HOP, (part + count) * HOP)
        signal[span].reshape(count, HOP)[...] += frames[:, block]
        norm[span].reshape(count, HOP)[...] += squared[block]
    kept = slice(N_FFT // 2, N_FFT // 2 + length)
    # where the window sum is 0, so is the signal; the division makes the new array that is returned
    signal = signal[kept] / np.maximum(norm[kept], np.finfo(np.float32).tiny)
    return np.pad(signal, (0, length - len(signal)))


def speed_perturb(waveform: np.ndarray, factor: float) -> np.ndarray:
    """`waveform` played `factor` times as fast, pitch raised by the same factor (soxr resampling): float32,
    about `len / factor` samples (soxr rounds the length)."""
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    # The clip as if recorded at `factor` x the rate, resampled to the rate: 1 / factor as many samples.
    return soxr.resample(np.asarray(waveform, dtype=np.float32), factor, 1.0, quality="HQ")


def pitch_shift(waveform: np.ndarray, semitones: float, fast_stretch: bool = True) -> np.ndarray:
    """`waveform` shifted by `semitones`, same length. `fast_stretch`: the tempo kept by `phase_vocoder_stretch`
    (librosa.effects.pitch_shift's method); otherwise plain speed perturbation, so the tempo follows the pitch (a clip
    shifted up is shorter, then zero-padded to the length; shifted down, it is cut)."""
    factor = 2.0 ** (semitones / 12)
    stretched = phase_vocoder_stretch(waveform, 1 / factor) if fast_stretch else waveform
    return fit_length(speed_perturb(stretched, factor), len(waveform))


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """Cut to `length` samples or zero-pad the end to it (what audiomentations' `leave_length_unchanged` does)."""
    return np.pad(waveform[:length], (0, max(0, length - len(waveform))))


class FastTimeStretch(audiomentations.TimeStretch):
    """audiomentations' TimeStretch (same parameters and checks, same random draws) with `method` `fast_phase_vocoder`
    or `soxr_speed`. With `leave_length_unchanged` (hf-ser's default) the result is cut or zero-padded to the input's
    length, as audiomentations does; without, it keeps the stretched length (`len / rate`)."""

    supports_multichannel = False

    def __init__(self, method: str, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def apply(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        stretch = phase_vocoder_stretch if self.method == "fast_phase_vocoder" else speed_perturb
        stretched = stretch(samples, self.parameters["rate"])
        return fit_length(stretched, len(samples)) if self.leave_length_unchanged else stretched


class FastPitchShift(audiomentations.PitchShift):
    """audiomentations' PitchShift (same parameters and checks, same random draws) with `method` `fast_phase_vocoder`
    (tempo kept) or `soxr_speed` (tempo follows the pitch); the length is always the input's."""

    supports_multichannel = False

    def __init__(self, method: str, **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def apply(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        fast_stretch = self.method == "fast_phase_vocoder"
        return pitch_shift(samples, self.parameters["num_semitones"], fast_stretch=fast_stretch)
