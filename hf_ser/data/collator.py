"""Dynamic padding: each batch is padded to its longest example (or up to a multiple of `pad_to_multiple_of`
samples, so that batches come in a few fixed lengths), with an attention mask over real samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from transformers import FeatureExtractionMixin

from hf_ser.data.votes import LABEL_DISTRIBUTION
from hf_ser.models.modeling_wav2vec2_ser import whisper_clip_frames


def is_whisper_extractor(feature_extractor) -> bool:
    """A Whisper-style extractor: log-Mel `input_features` of a fixed window (`n_samples`, 30 s) unless told less."""
    return feature_extractor.model_input_names[0] == "input_features" and hasattr(feature_extractor, "n_samples")


def clip_features(
    feature_extractor,
    waveforms: list,
    sampling_rate: int,
    pad_to_samples: Optional[int] = None,
    whisper_clip_length: bool = False,
) -> dict:
    """Model inputs of each clip, as training, evaluation and prediction all prepare them: `{input name: [...]}`, plus
    the extractor's `attention_mask` where the collator cannot rebuild it from lengths (Whisper's log-Mel frames, or
    clips padded to `pad_to_samples`, whose padding must stay marked as padding).

    Whisper extractors pad to their 30 s window; with `whisper_clip_length` (the model's `whisper_clip_length`) only
    to the longest clip (or `pad_to_samples`) plus the margin of `whisper_clip_frames`, so that the frames computed
    equal the first frames of the 30 s features."""
    padding = {"padding": "max_length", "max_length": pad_to_samples} if pad_to_samples else {}
    if is_whisper_extractor(feature_extractor):
        padding = {}  # the 30 s window
        if whisper_clip_length:
            hop = feature_extractor.hop_length
            longest = min(max(max(len(w) for w in waveforms), pad_to_samples or 0), feature_extractor.n_samples)
            frames = whisper_clip_frames(-(-longest // hop), feature_extractor.nb_max_frames)
            padding = {"padding": "max_length", "max_length": frames * hop}
    features = feature_extractor(waveforms, sampling_rate=sampling_rate, return_attention_mask=True, **padding)
    input_name = feature_extractor.model_input_names[0]
    output = {input_name: list(features[input_name])}
    if input_name != "input_values" or pad_to_samples:
        output["attention_mask"] = list(features["attention_mask"])
    return output


@dataclass
class SERDataCollator:
    """Pads a batch of `clip_features` outputs with the extractor's `pad` and adds `labels`.

    `pad_to_multiple_of` (samples of waveform input; training sets it from `pad_to_multiple_of_seconds`) rounds the
    padded length up, so a run sees a few batch shapes instead of one per batch: CPU allocators then reuse freed
    activation buffers instead of keeping one of every size (docs/benchmarks.md). The padding is masked, so models
    that take the mask give the same outputs. Whisper's log-Mel frames are padded as before (to the longest clip)."""

    feature_extractor: FeatureExtractionMixin
    pad_to_multiple_of: Optional[int] = None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_name = self.feature_extractor.model_input_names[0]
        multiple = self.pad_to_multiple_of
        if is_whisper_extractor(self.feature_extractor):
            examples, multiple = pad_mel_frames(examples, input_name), None
        # Whisper-style extractors pad to a fixed length themselves and hand over their own mask.
        keys = [input_name] + (["attention_mask"] if "attention_mask" in examples[0] else [])
        batch = self.feature_extractor.pad(
            [{key: example[key] for key in keys} for example in examples],
            padding="longest",
            pad_to_multiple_of=multiple,
            return_attention_mask=True,
            return_tensors="pt",
        )
        if "label" in examples[0]:  # class ids, or one value per dimension (`task: dimensional`)
            labels = [example["label"] for example in examples]
            dtype = torch.float32 if isinstance(labels[0], (list, tuple, np.ndarray)) else torch.long
            batch["labels"] = torch.tensor(np.asarray(labels), dtype=dtype)
        if LABEL_DISTRIBUTION in examples[0]:  # soft targets: `hf_ser.training.trainer.SERTrainer.compute_loss`
            batch[LABEL_DISTRIBUTION] = torch.tensor(
                [example[LABEL_DISTRIBUTION] for example in examples], dtype=torch.float32
            )
        return dict(batch)


def pad_mel_frames(examples: list[dict], input_name: str = "input_features") -> list[dict]:
    """Clip-length Whisper features of different frame counts (from different `clip_features` calls) padded to the
    longest with each clip's last frame, and their masks with 0. That frame is one of pure padding (see
    `whisper_clip_frames`), so the result equals what the extractor computes for the longer length. (The extractor's
    own `pad` pads along the mel axis of Whisper's (mels, frames) features.)"""
    longest = max(np.shape(example[input_name])[-1] for example in examples)
    padded = []
    for example in examples:
        features = np.asarray(example[input_name], dtype=np.float32)
        missing = longest - features.shape[-1]
        if missing:
            example = {
                **example,
                input_name: np.pad(features, ((0, 0), (0, missing)), mode="edge"),
                "attention_mask": np.pad(np.asarray(example["attention_mask"]), (0, missing)),
            }
        padded.append(example)
    return padded
