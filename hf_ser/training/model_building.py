"""Build the model and its feature extractor from the recipe's model keys."""

from __future__ import annotations

import logging
from typing import Optional

import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
)

from hf_ser.arguments import ModelArguments
from hf_ser.models.configuration_wav2vec2_ser import Wav2Vec2SERConfig
from hf_ser.models.modeling_wav2vec2_ser import Wav2Vec2SER, apply_backbone_overrides

logger = logging.getLogger(__name__)


def _label_maps(label_names: list[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


def problem_type_of(dimensional: bool) -> Optional[str]:
    """The config's `problem_type`, which carries the task into a saved model (`pipeline` reads it too: no softmax
    for regression); categorical models keep transformers' default (unset: single-label classification)."""
    return "regression" if dimensional else None


def build_feature_extractor(model_args: ModelArguments, sampling_rate: int, backbone_config=None):
    """The pretrained backbone's own extractor when there is one; else one that matches the architecture."""
    if model_args.model_name_or_path:
        return AutoFeatureExtractor.from_pretrained(model_args.model_name_or_path)
    if model_args.backbone:
        extractor = AutoFeatureExtractor.from_pretrained(model_args.backbone)
        extractor.return_attention_mask = True  # pooling needs it; the model decides what the encoder gets
        return extractor
    if model_args.model_type == "ser-cnn":  # normalises inside the model; raw waveforms in
        return Wav2Vec2FeatureExtractor(sampling_rate=sampling_rate, do_normalize=False, return_attention_mask=True)
    if backbone_config is not None and backbone_config.model_type == "whisper":
        # Whisper's encoder takes exactly 2 * max_source_positions mel frames (10 ms hop): 30 s for real checkpoints.
        # The extractor saves only `chunk_length` (seconds) and recomputes its sizes from it when loaded, so the
        # chunk must be a whole number of seconds or the reloaded extractor pads to a float length and fails.
        hop_length = WhisperFeatureExtractor().hop_length
        samples = 2 * backbone_config.max_source_positions * hop_length
        if samples % sampling_rate:
            raise ValueError(
                f"backbone_config: max_source_positions={backbone_config.max_source_positions} gives Whisper inputs of "
                f"{samples / sampling_rate:g} s; the saved feature extractor can only describe whole seconds: use a "
                f"multiple of {sampling_rate // (2 * hop_length)} (1500 = 30 s, as released Whisper checkpoints)"
            )
        return WhisperFeatureExtractor(
            feature_size=backbone_config.num_mel_bins,
            sampling_rate=sampling_rate,
            chunk_length=samples // sampling_rate,
            return_attention_mask=True,  # so that `pipeline` hands the model its mask (pooling, clip-length crop)
        )
    return Wav2Vec2FeatureExtractor(sampling_rate=sampling_rate, do_normalize=True, return_attention_mask=True)


def build_model(
    model_args: ModelArguments,
    label_names: list[str],
    class_weights: Optional[list[float]] = None,
    sampling_rate: int = 16_000,
    dimensional: bool = False,
) -> PreTrainedModel:
    """The model a recipe's model keys describe; `sampling_rate` is the data's (recipe key `sampling_rate`).
    `dimensional` (`task: dimensional`): one output per name in `label_names` (the dimensions), a regression loss."""
    labels = _label_maps(label_names)
    task = {"problem_type": problem_type_of(dimensional), "dimensional_loss": model_args.dimensional_loss}
    if model_args.model_name_or_path:
        # hf-ser writes safetensors only; refusing pickles means a tampered checkpoint cannot run code on load.
        model = AutoModelForAudioClassification.from_pretrained(model_args.model_name_or_path, use_safetensors=True)
        if model.config.id2label != labels["id2label"]:
            raise ValueError(
                f"{model_args.model_name_or_path} was trained on labels {list(model.config.id2label.values())}, "
                f"the data has {label_names}"
            )
        if (model.config.problem_type == "regression") != dimensional:
            tasks = ["categorical", "dimensional"] if dimensional else ["dimensional", "categorical"]
            raise ValueError(
                f"{model_args.model_name_or_path} is a {tasks[0]} model (problem_type "
                f"{model.config.problem_type!r}); the recipe's task is {tasks[1]}"
            )
        model.config.dimensional_loss = model_args.dimensional_loss
        if hasattr(model.config, "class_weights"):  # the stored weights belong to the corpus it was trained on
            model.config.class_weights = class_weights
        return model
    if model_args.model_type == "ser-cnn":
        from hf_ser.models.configuration_ser_cnn import SERCNNConfig
        from hf_ser.models.modeling_ser_cnn import SERCNN

        # One sampling rate: the data's. SERCNN builds its mel filter bank from it, so another value in model_config
        # would silently compute features of the wrong frequencies.
        configured = model_args.model_config.get("sampling_rate", sampling_rate)
        if configured != sampling_rate:
            raise ValueError(
                f"model_config sets sampling_rate={configured} but the data is resampled to {sampling_rate} Hz: "
                "set the recipe's `sampling_rate` only (SERCNN takes it from there)"
            )
        model_config = {**model_args.model_config, "sampling_rate": sampling_rate}
        config = SERCNNConfig(class_weights=class_weights, **labels, **task, **model_config)
        return SERCNN(config)
    if model_args.model_type != "wav2vec2-ser":
        raise ValueError(f"model_type {model_args.model_type!r}: use `wav2vec2-ser` or `ser-cnn`")
    head = dict(
        pooling=model_args.pooling,
        use_weighted_layer_sum=model_args.use_weighted_layer_sum,
        head_hidden_sizes=model_args.head_hidden_sizes,
        head_dropout=model_args.head_dropout,
        head_batch_norm=model_args.head_batch_norm,
        freeze_feature_encoder=model_args.freeze_feature_encoder,
        whisper_clip_length=model_args.whisper_clip_length,
        class_weights=class_weights,
        **task,
        **model_args.model_config,
    )
    if model_args.backbone:
        return Wav2Vec2SER.from_backbone(
            model_args.backbone, backbone_overrides=model_args.backbone_overrides, **labels, **head
        )
    if not model_args.backbone_config:
        raise ValueError("set `backbone` (pretrained encoder) or `backbone_config` (random encoder from a config)")
    return Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=backbone_config_of(model_args), **labels, **head))


def start_at_training_means(model: PreTrainedModel, means: list[float]) -> None:
    """A new dimensional model's outputs start at the training split's mean of each dimension (the bias of its last
    layer), so training learns the variation around them rather than first the corpus's scale (IEMOCAP 1-5,
    MSP-Podcast 1-7) from outputs near 0."""
    output_layer = model.head[-1] if hasattr(model, "head") else model.classifier
    if output_layer.bias is None or output_layer.bias.numel() != len(means):
        raise ValueError(f"{type(model).__name__}'s output layer has no bias of {len(means)} values")
    with torch.no_grad():
        output_layer.bias.copy_(torch.tensor(means, dtype=output_layer.bias.dtype))


def backbone_config_of(model_args: ModelArguments):
    """The encoder config a recipe asks for, `backbone_overrides` applied, without building the model."""
    if model_args.backbone:
        config = AutoConfig.from_pretrained(model_args.backbone)
    elif model_args.backbone_config:
        config = Wav2Vec2SERConfig(backbone_config=dict(model_args.backbone_config)).backbone_config
    else:
        return None
    return apply_backbone_overrides(config, model_args.backbone_overrides)
