"""The cheap tempo/pitch methods: what they compute (against librosa, against resampling theory), their length and
dtype contracts, and how a recipe selects them."""

import librosa
import numpy as np
import pytest

from hf_ser.data.augment import augment, build_augmenter
from hf_ser.data.tempo_pitch import FastPitchShift, FastTimeStretch, phase_vocoder_stretch, pitch_shift, speed_perturb

RATE = 16_000


def speech_like(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A 220 Hz harmonic tone with a little noise and a silent gap (silent STFT bins must not break the vocoder)."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
    waveform = 0.2 * tone + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    waveform[len(t) // 3 : len(t) // 2] = 0.0
    return waveform.astype(np.float32)


def dominant_frequency(waveform: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.argmax(spectrum) * RATE / len(waveform))


@pytest.mark.parametrize("rate", [0.8, 1.0, 1.1, 1.25])
def test_fast_phase_vocoder_is_librosas_phase_vocoder(rate):
    waveform = speech_like()
    expected = librosa.effects.time_stretch(waveform.astype(np.float64), rate=rate)  # float64: no phase drift
    stretched = phase_vocoder_stretch(waveform, rate)
    assert stretched.dtype == np.float32 and len(stretched) == len(expected) == round(len(waveform) / rate)
    np.testing.assert_allclose(stretched, expected, atol=1e-4)


def test_fast_pitch_shift_is_librosas_pitch_shift_and_keeps_the_length():
    waveform = speech_like()
    for semitones in (-4.0, 2.5):
        expected = librosa.effects.pitch_shift(
            waveform.astype(np.float64), sr=RATE, n_steps=semitones, res_type="soxr_hq"
        )
        shifted = pitch_shift(waveform, semitones)
        assert shifted.dtype == np.float32 and len(shifted) == len(waveform)
        np.testing.assert_allclose(shifted, expected, atol=1e-4)


def test_speed_perturbation_changes_length_and_pitch_by_the_factor():
    waveform = speech_like(2.0)
    for factor in (0.9, 1.1):
        faster = speed_perturb(waveform, factor)
        assert faster.dtype == np.float32 and abs(len(faster) - len(waveform) / factor) <= 1
        # tempo and pitch together: the 220 Hz fundamental moves to 220 x factor
        assert dominant_frequency(faster) == pytest.approx(220 * factor, abs=2)
    shifted = pitch_shift(waveform, 12.0, fast_stretch=False)  # an octave up by speed: half as long, zero-padded
    assert len(shifted) == len(waveform) and np.abs(shifted[len(waveform) // 2 + 10 :]).max() == 0


@pytest.mark.parametrize("method", ["fast_phase_vocoder", "soxr_speed"])
def test_recipe_method_selects_the_fast_transforms_with_audiomentations_draws(method):
    waveform = speech_like()
    specs = [
        {"name": "TimeStretch", "p": 1.0, "method": method},
        {"name": "PitchShift", "p": 1.0, "method": method},
    ]
    augmenter = build_augmenter(specs)
    assert [type(t) for t in augmenter.transforms] == [FastTimeStretch, FastPitchShift]
    assert augmenter.transforms[0].min_rate == 0.8 and augmenter.transforms[1].max_semitones == 4.0  # seed defaults
    first = augment(augmenter, waveform, RATE, rng=np.random.default_rng([1, 2]))
    again = augment(augmenter, waveform, RATE, rng=np.random.default_rng([1, 2]))
    other = augment(augmenter, waveform, RATE, rng=np.random.default_rng([1, 3]))
    assert first.dtype == np.float32 and len(first) == len(waveform)  # leave_length_unchanged (the seed's default)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # the same draws as audiomentations' own TimeStretch: only the method differs
    default = build_augmenter([{"name": "TimeStretch", "p": 1.0}])
    fast = build_augmenter([{"name": "TimeStretch", "p": 1.0, "method": method}])
    for compose in (default, fast):
        augment(compose, waveform, RATE, rng=np.random.default_rng(7))
    assert fast.transforms[0].parameters["rate"] == default.transforms[0].parameters["rate"]


def test_time_stretch_without_leave_length_unchanged_keeps_the_stretched_length():
    augmenter = build_augmenter(
        [
            {
                "name": "TimeStretch",
                "p": 1.0,
                "min_rate": 1.25,
                "max_rate": 1.25,
                "leave_length_unchanged": False,
                "method": "soxr_speed",
            }
        ]
    )
    assert len(augment(augmenter, speech_like(), RATE, rng=np.random.default_rng(0))) == RATE / 1.25


def test_an_unknown_method_is_a_one_line_error_naming_the_entry():
    with pytest.raises(ValueError, match=r"^augmentations\[1\] \(PitchShift\): method 'wsola' is not one of ") as error:
        build_augmenter([{"name": "TimeMask"}, {"name": "PitchShift", "method": "wsola"}])
    assert "\n" not in str(error.value) and "soxr_speed" in str(error.value)
    with pytest.raises(ValueError, match=r"augmentations\[0\] \(TimeStretch\): .*min_rate"):
        build_augmenter([{"name": "TimeStretch", "method": "soxr_speed", "min_rate": 2.0, "max_rate": 1.0}])
