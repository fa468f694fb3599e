"""Dynamic padding: each batch is padded to its longest example, with an attention mask over real samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import FeatureExtractionMixin


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
