"""Dynamic padding: each batch is padded to its longest example, with an attention mask over real samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers import FeatureExtractionMixin


def clip_features(feature_extractor, waveforms: list, sampling_rate: int, pad_to_samples: Optional[int] = None) -> dict:
    """Model inputs of each clip, as training, evaluation and prediction all prepare them: `{input name: [...]}`, plus
    the extractor's `attention_mask` where the collator cannot rebuild it from lengths (fixed-size inputs: Whisper's
    30 s of mel frames, or clips padded to `pad_to_samples`, whose padding must stay marked as padding)."""
    padding = {"padding": "max_length", "max_length": pad_to_samples} if pad_to_samples else {}
    features = feature_extractor(waveforms, sampling_rate=sampling_rate, return_attention_mask=True, **padding)
    input_name = feature_extractor.model_input_names[0]
    output = {input_name: list(features[input_name])}
    if input_name != "input_values" or pad_to_samples:
        output["attention_mask"] = list(features["attention_mask"])
    return output


@dataclass
class SERDataCollator:
    feature_extractor: FeatureExtractionMixin

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_name = self.feature_extractor.model_input_names[0]
        # Whisper-style extractors pad to a fixed length themselves and hand over their own mask.
        keys = [input_name] + (["attention_mask"] if "attention_mask" in examples[0] else [])
        batch = self.feature_extractor.pad(
            [{key: example[key] for key in keys} for example in examples],
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([example["label"] for example in examples], dtype=torch.long)
        return dict(batch)
