"""Random-weight checkpoints in the exact layouts users download from the Hub.

Each layout is built from a *published* `config.json` (../shared/checkpoints, byte-for-byte copies of the Hub files)
shrunk to 2 encoder layers with every other value as published, instantiated as the class the Hub checkpoint was saved
from (so its state-dict keys carry that class's prefixes: `wav2vec2.*`, `hubert.*`, `model.encoder.*`, bare keys) and
written with `save_pretrained`, next to the published feature extractor. A few layouts have no copy there and are
written from the published values they differ by (Whisper large-v3's 128 mel bins, Wav2Vec2-BERT's fbank input, the
pickled `weight_g`/`weight_v` files older checkpoints ship).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import transformers
from transformers import AutoConfig, AutoFeatureExtractor

CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "shared" / "checkpoints"
ENCODER_LAYERS = 2


@dataclass(frozen=True)
class Layout:
    name: str  # folder name of the built checkpoint
    source: Optional[str]  # folder under CHECKPOINTS_DIR with the published config and extractor
    saved_as: str  # the transformers class the checkpoint is saved from
    encoder_prefix: str  # prefix of the encoder's keys in the saved state dict
    family: str  # "group" (group-norm conv encoder), "layer" (layer-norm) or "whisper"
    legacy_bin: bool = False  # pytorch_model.bin with weight_g / weight_v positional-conv weights
    edit: Optional[Callable] = None  # a published value this layout differs by (documented per layout)


def _whisper_large_v3(config):
    # A stand-in for openai/whisper-large-v3, which has no copy in ../shared: whisper-tiny's published config with
    # 128 mel bins (what large-v3 differs by for the input path; its width and depth are not reproduced), and the
    # published 80-bin extractor recomputed for 128 bins.
    config.num_mel_bins = 128


LAYOUTS = [
    Layout("wav2vec2-base-960h", "facebook__wav2vec2-base-960h", "Wav2Vec2ForCTC", "wav2vec2.", "group"),
    Layout(
        "wav2vec2-base-960h-legacy-bin",
        "facebook__wav2vec2-base-960h",
        "Wav2Vec2ForCTC",
        "wav2vec2.",
        "group",
        legacy_bin=True,
    ),
    Layout("wav2vec2-base-pretraining", "facebook__wav2vec2-base-960h", "Wav2Vec2ForPreTraining", "wav2vec2.", "group"),
    Layout("wavlm-base-plus", "microsoft__wavlm-base-plus", "WavLMModel", "", "group"),
    Layout(
        "hubert-large-superb-er",
        "superb__hubert-large-superb-er",
        "HubertForSequenceClassification",
        "hubert.",
        "layer",
    ),
    Layout(
        "wav2vec2-large-robust-msp-dim",
        "audeering__wav2vec2-large-robust-12-ft-emotion-msp-dim",
        "Wav2Vec2ForSequenceClassification",
        "wav2vec2.",
        "layer",
    ),
    Layout("whisper-tiny", "openai__whisper-tiny", "WhisperForConditionalGeneration", "model.encoder.", "whisper"),
    Layout("whisper-base", "openai__whisper-base", "WhisperForConditionalGeneration", "model.encoder.", "whisper"),
    Layout("whisper-small", "openai__whisper-small", "WhisperForConditionalGeneration", "model.encoder.", "whisper"),
    Layout("whisper-base-model", "openai__whisper-base", "WhisperModel", "encoder.", "whisper"),
    Layout(
        "whisper-large-v3-mels",
        "openai__whisper-tiny",
        "WhisperForConditionalGeneration",
        "model.encoder.",
        "whisper",
        edit=_whisper_large_v3,
    ),
    Layout("wav2vec2-bert", None, "Wav2Vec2BertModel", "", "layer"),
]
LAYOUT_NAMES = [layout.name for layout in LAYOUTS]


def published_config(layout: Layout):
    if layout.source is None:
        # Wav2Vec2-BERT has no copy in ../shared: transformers' Wav2Vec2BertConfig defaults (its docstring names
        # facebook/w2v-bert-2.0), not checked against that checkpoint's config.json.
        config = transformers.Wav2Vec2BertConfig()
    else:
        config = AutoConfig.from_pretrained(CHECKPOINTS_DIR / layout.source)
    for key in ("num_hidden_layers", "encoder_layers", "decoder_layers"):
        if hasattr(config, key):
            setattr(config, key, ENCODER_LAYERS)
    if layout.edit is not None:
        layout.edit(config)
    return config


def published_feature_extractor(layout: Layout, config):
    if layout.source is None:
        return transformers.SeamlessM4TFeatureExtractor()  # the extractor class w2v-bert-2.0 uses, with its defaults
    extractor = AutoFeatureExtractor.from_pretrained(CHECKPOINTS_DIR / layout.source)
    if getattr(config, "num_mel_bins", None) and extractor.feature_size != config.num_mel_bins:
        extractor = type(extractor)(**{**extractor.to_dict(), "feature_size": config.num_mel_bins, "mel_filters": None})
    return extractor


def _legacy_weight_norm_state_dict(model) -> dict:
    """The state dict as checkpoints saved before torch's parametrized weight norm store it (`weight_g`, `weight_v`)."""
    renamed = {}
    for key, tensor in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        renamed[key] = tensor.contiguous()
    return renamed


def build_layout(layout: Layout, folder: Path, seed: int = 0) -> Path:
    """Write a random-weight checkpoint of `layout` into `folder`; returns the folder."""
    config = published_config(layout)
    torch.manual_seed(seed)
    model = getattr(transformers, layout.saved_as)(config).eval()
    if layout.legacy_bin:
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder)
        torch.save(_legacy_weight_norm_state_dict(model), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    published_feature_extractor(layout, config).save_pretrained(folder)
    (folder / "layout.json").write_text(
        json.dumps({"saved_as": layout.saved_as, "encoder_prefix": layout.encoder_prefix})
    )
    return folder


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint file in `folder`, read from disk (not from any model in memory)."""
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
