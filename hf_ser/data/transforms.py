"""The on-the-fly work of a split (`set_transform`): decode, crop or pad, augment (training only), extract features;
and the callback that moves the training draws to the next epoch."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import Counter
from typing import Optional

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import TrainerCallback

from hf_ser.arguments import DataArguments
from hf_ser.data.audio import AudioDecodeError, crop_or_pad, load_audio
from hf_ser.data.augment import augment, build_augmenter
from hf_ser.data.collator import clip_features
from hf_ser.data.sources import audio_source
from hf_ser.data.votes import LABEL_DISTRIBUTION

logger = logging.getLogger(__name__)


class AudioTransform:
    """The `set_transform` function: decode, crop (random for training, centred for evaluation), augment (training
    only), then the model's feature extractor.

    Training randomness (crop offset, augmentation) is drawn from a generator keyed by (seed, epoch, file, draw), not
    from a global RNG: the Trainer fetches the next batch before it restores the RNG state of a checkpoint, so global
    draws would differ after a resume. Keyed draws make an interrupted and resumed run see the same crops as an
    uninterrupted one, independent of dataloader workers. `set_epoch` (called by `EpochCallback`) moves to the next
    epoch's draws; repeated reads of one item within an epoch still differ. The file is keyed by its path below
    `clip_root` (the split's common folder, `clip_root_of`), so the same corpus gives the same draws wherever it lies
    (another home folder, another machine).
    """

    def __init__(
        self,
        feature_extractor,
        args: DataArguments,
        train: bool,
        seed: int = 0,
        whisper_clip_length: bool = False,
        clip_root: Optional[str] = None,
    ):
        self.feature_extractor, self.train, self.seed = feature_extractor, train, seed
        self.clip_root = clip_root
        self.whisper_clip_length = whisper_clip_length  # the model's `whisper_clip_length`: Mel frames at clip length
        self.augmenter = build_augmenter(args.augmentations) if train else None
        self.sampling_rate = args.sampling_rate
        self.window = args.max_duration_seconds if train else args.eval_max_duration_seconds
        self.pad = train and args.pad_to_max_duration
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.draws = epoch, Counter()

    def _generator(self, path: str) -> np.random.Generator:
        name = os.path.relpath(path, self.clip_root) if self.clip_root else path
        file_key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
        self.draws[path] += 1
        return np.random.default_rng([self.seed, self.epoch, file_key, self.draws[path]])

    def __call__(self, batch: dict) -> dict:
        waveforms = []
        for index in range(len(batch["path"])):
            example = {key: values[index] for key, values in batch.items()}
            try:
                waveform = load_audio(audio_source(example), self.sampling_rate)
            except AudioDecodeError as error:
                raise AudioDecodeError(
                    f"{error}. It passed the audio check when the run started, so it was deleted or changed during "
                    "the run: restore it (training resumes from the last checkpoint) or remove it from the corpus"
                ) from None
            rng = self._generator(example["path"]) if self.train else None
            if self.window:
                waveform = crop_or_pad(waveform, int(self.window * self.sampling_rate), random=self.train, rng=rng)
            waveforms.append(augment(self.augmenter, waveform, self.sampling_rate, rng=rng) if self.train else waveform)
        # `pad_to_max_duration`: the extractor pads, so the mask marks the padding as padding (not as silent audio).
        pad_to = int(self.window * self.sampling_rate) if self.pad else None
        features = clip_features(
            self.feature_extractor, waveforms, self.sampling_rate, pad_to, self.whisper_clip_length
        )
        targets = {"label": batch["label"]}
        if self.train and LABEL_DISTRIBUTION in batch:  # `label_targets: soft`; evaluation scores the hard label
            targets[LABEL_DISTRIBUTION] = batch[LABEL_DISTRIBUTION]
        return {**features, **targets}


class EpochCallback(TrainerCallback):
    """Tells the training split's `AudioTransform` which epoch starts, so its keyed random draws follow the epoch; on
    a resume the Trainer restores `state.epoch` before this runs."""

    def __init__(self, train: Dataset):
        self.train = train

    def on_epoch_begin(self, args, state, control, **kwargs):
        transform = self.train.format["format_kwargs"].get("transform")
        if isinstance(transform, AudioTransform):
            transform.set_epoch(int(state.epoch + 1e-6))


def clip_root_of(split: Dataset) -> Optional[str]:
    """The folder every clip of `split` lies under (None when the paths share none, e.g. relative and absolute)."""
    paths = [path for path in split.data.column("path").to_pylist() if path]
    try:
        return os.path.dirname(paths[0]) if len(paths) == 1 else os.path.commonpath(paths)
    except (IndexError, ValueError):
        return None


def attach_transforms(
    splits: DatasetDict,
    feature_extractor,
    args: DataArguments,
    seed: int = 0,
    training: bool = True,
    whisper_clip_length: bool = False,
) -> DatasetDict:
    """Training transforms (random crop, augmentation) on the `train` split when `training`; evaluation transforms
    (whole clips) everywhere else. `whisper_clip_length`: the model encodes Whisper inputs at clip length
    (`hf_ser.models.modeling_wav2vec2_ser.encodes_whisper_at_clip_length`), so Mel frames are computed only that far."""
    for name, split in splits.items():
        train = training and name == "train"
        root = clip_root_of(split) if train else None  # only training draws are keyed
        split.set_transform(AudioTransform(feature_extractor, args, train, seed, whisper_clip_length, root))
    return splits


def clean_training_view(
    train: Dataset, feature_extractor, args: DataArguments, seed: int = 0, whisper_clip_length: bool = False
) -> Dataset:
    """The training split with the training crop (random, `max_duration_seconds`) but no augmentation: what precise
    BatchNorm recomputes statistics on (`hf_ser.training.callbacks.PreciseBatchNormCallback`). A new view; `train` keeps its
    own transform."""
    clean_args = dataclasses.replace(args, augmentations=[])
    transform = AudioTransform(feature_extractor, clean_args, True, seed, whisper_clip_length, clip_root_of(train))
    return train.with_transform(transform)
