"""Augmentation of whole collated training batches on the training device, in plain torch: the recipe's
`batch_augmentations`, applied by `hf_ser.training.trainer.SERTrainer` in its training step (never to evaluation or
prediction batches, which do not pass through it).

A recipe lists them like `augmentations`, with audiomentations' names and keys (and its defaults where a key is
left out)::

    batch_augmentations:
      - {name: AddGaussianSNR, p: 0.5, min_snr_db: 10.0, max_snr_db: 40.0}
      - {name: Gain, p: 0.5, min_gain_db: -6.0, max_gain_db: 6.0}
      - {name: TimeMask, p: 0.5, min_band_part: 0.0, max_band_part: 0.1}
      - {name: Mixup, p: 0.5, alpha: 0.4}

Mixup (not an audiomentations transform) mixes each chosen item with another item of the batch and mixes their
targets the same way; it runs after the others, whatever its place in the list.

Each item of the batch draws on its own whether a transform applies and with what value. Only real samples change:
the SNR is measured over an item's real samples, noise and gain reach no padding, and a mask lies inside the item's
real length (the `attention_mask`; without one every sample is real). Differences from audiomentations' per-clip
versions: TimeMask zeroes its span without a fade-in/out; the SNR and masks are relative to the collated input,
i.e. after the feature extractor's normalisation where it normalises (`do_normalize`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch

from hf_ser.data.votes import LABEL_DISTRIBUTION

INPUT_NAME = "input_values"


@dataclass
class AddGaussianSNR:
    """White Gaussian noise at a signal-to-noise ratio drawn uniformly in dB."""

    p: float = 0.5
    min_snr_db: float = 5.0
    max_snr_db: float = 40.0

    def __call__(self, values: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor, generator) -> torch.Tensor:
        snr_db = _uniform(self.min_snr_db, self.max_snr_db, len(values), generator, values)
        power = (values.square() * real).sum(dim=1) / lengths.clamp(min=1)
        scale = torch.sqrt(power / 10 ** (snr_db / 10)) * _applies(self.p, len(values), generator, values)
        noise = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
        return values + noise * scale[:, None] * real


@dataclass
class Gain:
    """The item multiplied by a gain drawn uniformly in dB."""

    p: float = 0.5
    min_gain_db: float = -12.0
    max_gain_db: float = 12.0

    def __call__(self, values: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor, generator) -> torch.Tensor:
        gain = 10 ** (_uniform(self.min_gain_db, self.max_gain_db, len(values), generator, values) / 20)
        gain = torch.where(_applies(self.p, len(values), generator, values) > 0, gain, torch.ones_like(gain))
        return torch.where(real > 0, values * gain[:, None], values)


@dataclass
class TimeMask:
    """One span of `min_band_part`-`max_band_part` of the item's real length, at a uniform position, set to 0."""

    p: float = 0.5
    min_band_part: float = 0.01
    max_band_part: float = 0.2

    def __call__(self, values: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor, generator) -> torch.Tensor:
        part = _uniform(self.min_band_part, self.max_band_part, len(values), generator, values)
        span = (part * lengths).floor() * _applies(self.p, len(values), generator, values)
        start = (torch.rand(len(values), generator=generator, device=values.device) * (lengths - span + 1)).floor()
        position = torch.arange(values.shape[1], device=values.device)[None, :]
        masked = (position >= start[:, None]) & (position < (start + span)[:, None])
        return values.masked_fill(masked, 0.0)


@dataclass
class Mixup:
    """mixup (Zhang et al., ICLR 2018) of waveforms: each chosen item (probability `p`) becomes
    `lam * itself + (1 - lam) * partner`, the partner drawn from the batch by a random permutation and `lam` from
    Beta(alpha, alpha) folded to >= 0.5, so the item stays the larger part of its mixture. Its target becomes the same
    mixture: the two label distributions (one-hot for hard labels) for classification, the two value vectors for
    dimensional regression. The mixed item is real wherever either clip is (the attention masks' union)."""

    p: float = 0.5
    alpha: float = 0.4

    def __call__(self, batch: dict, generator, num_labels: Optional[int]) -> dict:
        values = batch[INPUT_NAME]
        count = len(values)
        partner = torch.randperm(count, generator=generator, device=values.device)
        # torch's Beta takes no generator: numpy draws it, seeded from the step's generator (still keyed draws)
        seed = int(torch.randint(2**62, (1,), generator=generator, device=values.device))
        lam = torch.from_numpy(np.random.default_rng(seed).beta(self.alpha, self.alpha, count))
        lam = torch.maximum(lam, 1 - lam).to(device=values.device, dtype=values.dtype)
        lam = torch.where(_applies(self.p, count, generator, values) > 0, lam, torch.ones_like(lam))
        mixed = {**batch, INPUT_NAME: lam[:, None] * values + (1 - lam[:, None]) * values[partner]}
        if batch.get("attention_mask") is not None:
            mask = batch["attention_mask"]
            mixed["attention_mask"] = torch.maximum(mask, mask[partner])
        labels = batch.get("labels")
        if LABEL_DISTRIBUTION in batch:
            targets = batch[LABEL_DISTRIBUTION].to(values.dtype)
        elif labels is not None and labels.dtype.is_floating_point:  # dimensional values
            mixed["labels"] = lam[:, None] * labels + (1 - lam[:, None]) * labels[partner]
            return mixed
        elif labels is not None:
            if num_labels is None:
                raise ValueError(
                    "Mixup of class labels needs the number of classes (build_batch_augmenter's num_labels)"
                )
            targets = torch.nn.functional.one_hot(labels, num_labels).to(values.dtype)
        else:
            raise ValueError("Mixup needs the batch's labels")
        mixed[LABEL_DISTRIBUTION] = lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]
        return mixed


BATCH_TRANSFORMS = {cls.__name__: cls for cls in (AddGaussianSNR, Gain, TimeMask, Mixup)}


def _uniform(low: float, high: float, count: int, generator, like: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, device=like.device, dtype=like.dtype)


def _applies(p: float, count: int, generator, like: torch.Tensor) -> torch.Tensor:
    """1.0 for the items a transform applies to (probability `p` each), else 0.0."""
    return (torch.rand(count, generator=generator, device=like.device) < p).to(like.dtype)


@dataclass
class BatchAugmenter:
    """The recipe's `batch_augmentations`, in order, on a collated batch's `input_values`; Mixup (which also mixes the
    targets) last. `num_labels`: the classes, for mixing hard class labels."""

    transforms: list
    seed: int = 0
    num_labels: Optional[int] = None

    def generator(self, device: torch.device, *key: int) -> torch.Generator:
        """A generator on `device` seeded by (seed, *key): the training step passes (process, step, micro-batch), so
        a resumed run draws what an uninterrupted one does, and the global RNG (dropout) is left alone."""
        digest = hashlib.blake2b(repr((self.seed, *key)).encode(), digest_size=8).digest()
        return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        values = batch[INPUT_NAME]
        mask = batch.get("attention_mask")
        real = torch.ones_like(values) if mask is None else (mask > 0).to(values.dtype)
        lengths = real.sum(dim=1)
        mixups = [transform for transform in self.transforms if isinstance(transform, Mixup)]
        for transform in self.transforms:
            if not isinstance(transform, Mixup):
                values = transform(values, real, lengths, generator)
        batch = {**batch, INPUT_NAME: values}
        for mixup in mixups:
            batch = mixup(batch, generator, self.num_labels)
        return batch


def build_batch_augmenter(
    specs: Optional[list], seed: int = 0, num_labels: Optional[int] = None
) -> Optional[BatchAugmenter]:
    """A `BatchAugmenter` for the recipe's `batch_augmentations`, or None when there are none. A bad entry is a
    one-line error naming it and the key. `num_labels`: the number of classes (Mixup of hard labels needs it)."""
    if not specs:
        return None
    transforms = []
    for index, spec in enumerate(specs):
        where = f"batch_augmentations[{index}]"
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(f"{where} must be a mapping with a `name`, got {spec!r}")
        options = dict(spec)
        name = options.pop("name")
        if name not in BATCH_TRANSFORMS:
            raise ValueError(f"{where}: no batch transform {name!r}; use one of {', '.join(BATCH_TRANSFORMS)}")
        cls = BATCH_TRANSFORMS[name]
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"{where} ({name}): unknown key {unknown[0]!r}; {name} takes {', '.join(allowed)}")
        try:
            transform = cls(**{key: float(value) for key, value in options.items()})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where} ({name}): every value must be a number, got {options}") from error
        if not 0.0 <= transform.p <= 1.0:
            raise ValueError(f"{where} ({name}): p={transform.p} is not a probability")
        if name == "Mixup":
            if not transform.alpha > 0:
                raise ValueError(f"{where} (Mixup): alpha={transform.alpha} must be positive (Beta(alpha, alpha))")
            transforms.append(transform)
            continue
        low, high = allowed[1:]  # the other transforms: p, then the low and high end of the range they draw from
        limits = (0.0, 1.0) if name == "TimeMask" else (-float("inf"), float("inf"))  # a share of the clip
        if not limits[0] <= getattr(transform, low) <= getattr(transform, high) <= limits[1]:
            raise ValueError(
                f"{where} ({name}): {low}={getattr(transform, low)} and {high}={getattr(transform, high)} must "
                f"satisfy {limits[0]} <= {low} <= {high} <= {limits[1]}"
            )
        transforms.append(transform)
    return BatchAugmenter(transforms, seed=seed, num_labels=num_labels)


def check_batch_input(input_name: str) -> None:
    """Batch transforms work on raw waveforms: refuse models whose input is anything else (Whisper's log-Mel)."""
    if input_name != INPUT_NAME:
        raise ValueError(
            f"batch_augmentations transform waveforms ({INPUT_NAME}); this model's input is {input_name}: "
            "remove batch_augmentations (or use the per-clip `augmentations`)"
        )
