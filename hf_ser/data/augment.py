"""On-the-fly augmentation of training audio with audiomentations, configured by the recipe.

A recipe lists transforms as `{name: <audiomentations class>, p: <probability>, <keyword>: <value>, ...}`, e.g.::

    augmentations:
      - {name: AddGaussianNoise, p: 0.5, min_amplitude: 0.001, max_amplitude: 0.015}
      - {name: TimeStretch, p: 0.5, min_rate: 0.8, max_rate: 1.25}

TimeStretch and PitchShift take audiomentations' `method` (`signalsmith_stretch`, its default, or
`librosa_phase_vocoder`) or one of hf-ser's cheaper ones (`hf_ser.data.tempo_pitch`): `fast_phase_vocoder` (librosa's
phase vocoder, vectorised) or `soxr_speed` (speed perturbation: tempo and pitch change together). hf-ser's methods
draw their parameters exactly as audiomentations does, so a recipe switches method without changing anything else.
"""

from __future__ import annotations

import random
from typing import Optional

import numpy as np

# The seed's four, with its ranges; a recipe entry with only `name` (and `p`) gets these.
SEED_DEFAULTS = {
    "TimeStretch": {"min_rate": 0.8, "max_rate": 1.25, "leave_length_unchanged": True},
    "PitchShift": {"min_semitones": -4.0, "max_semitones": 4.0},
    "AddGaussianNoise": {"min_amplitude": 0.001, "max_amplitude": 0.015},
    "TimeMask": {"min_band_part": 0.0, "max_band_part": 0.1, "fade_duration": 0.005},
}


AUDIOMENTATIONS_METHODS = ("signalsmith_stretch", "librosa_phase_vocoder")
FAST_METHODS = ("fast_phase_vocoder", "soxr_speed")  # hf_ser.data.tempo_pitch


def _transform_class(audiomentations, index: int, name: str, options: dict):
    """The class that builds `name`: audiomentations' own, or hf-ser's (`hf_ser.data.tempo_pitch`) for a TimeStretch
    or PitchShift whose `method` is one of `FAST_METHODS`; any other `method` is an error naming the entry."""
    transform_class = getattr(audiomentations, name, None)
    if transform_class is None or not isinstance(transform_class, type):
        raise ValueError(f"augmentations[{index}]: audiomentations has no transform {name!r}")
    if name not in ("TimeStretch", "PitchShift") or "method" not in options:
        return transform_class
    method = options["method"]
    if method in FAST_METHODS:
        from hf_ser.data import tempo_pitch  # imports audiomentations, as this function does

        return {"TimeStretch": tempo_pitch.FastTimeStretch, "PitchShift": tempo_pitch.FastPitchShift}[name]
    if method not in AUDIOMENTATIONS_METHODS:
        raise ValueError(
            f"augmentations[{index}] ({name}): method {method!r} is not one of "
            + ", ".join((*AUDIOMENTATIONS_METHODS, *FAST_METHODS))
            + " (docs/recipes.md, augmentation)"
        )
    return transform_class


def build_augmenter(specs: Optional[list]):
    """An `audiomentations.Compose` for the recipe's `augmentations`, or None when there are none."""
    if not specs:
        return None
    import audiomentations

    transforms = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(f"augmentations[{index}] must be a mapping with a `name`, got {spec!r}")
        options = dict(spec)
        name = options.pop("name")
        transform_class = _transform_class(audiomentations, index, name, options)
        kwargs = {**SEED_DEFAULTS.get(name, {}), **options}
        try:
            transforms.append(transform_class(**kwargs))
        except (TypeError, ValueError) as error:
            raise ValueError(f"augmentations[{index}] ({name}): {error}") from error
    return audiomentations.Compose(transforms)


def augment(
    augmenter, waveform: np.ndarray, sampling_rate: int, rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """Apply `augmenter`; with `rng`, its draws are seeded from it (reproducible per item and epoch)."""
    if augmenter is None:
        return waveform
    if rng is None:
        return augmenter(samples=waveform, sample_rate=sampling_rate).astype(np.float32, copy=False)
    # audiomentations draws from the global `random` and `np.random`: seed them from `rng` for this call, then put
    # the caller's global state back so nothing else (the Trainer's own RNG bookkeeping) is disturbed.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        random.seed(int(rng.integers(2**63)))
        np.random.seed(int(rng.integers(2**32)))
        return augmenter(samples=waveform, sample_rate=sampling_rate).astype(np.float32, copy=False)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
