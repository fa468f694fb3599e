"""On-the-fly augmentation of training audio with audiomentations, configured by the recipe.

A recipe lists transforms as `{name: <audiomentations class>, p: <probability>, <keyword>: <value>, ...}`, e.g.::

    augmentations:
      - {name: AddGaussianNoise, p: 0.5, min_amplitude: 0.001, max_amplitude: 0.015}
      - {name: TimeStretch, p: 0.5, min_rate: 0.8, max_rate: 1.25}
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
        transform_class = getattr(audiomentations, name, None)
        if transform_class is None or not isinstance(transform_class, type):
            raise ValueError(f"augmentations[{index}]: audiomentations has no transform {name!r}")
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
