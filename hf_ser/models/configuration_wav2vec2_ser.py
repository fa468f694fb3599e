"""Configuration of Wav2Vec2SER: a pretrained speech encoder, frame pooling and the seed's MLP head.

This file travels with every checkpoint as remote code: it imports only transformers.
"""

from typing import Optional, Union

from transformers import AutoConfig, PretrainedConfig

POOLING_MODES = ("mean", "attentive_stats")
DIMENSIONAL_LOSSES = ("ccc", "mse")  # losses of `problem_type="regression"` (dimensional emotion)


class Wav2Vec2SERConfig(PretrainedConfig):
    r"""
    Args:
        backbone_config (`dict` or `PretrainedConfig`, *optional*):
            Configuration of the speech encoder (any `model_type` that `AutoModel` knows: wav2vec2, hubert, wavlm,
            data2vec-audio, whisper — only Whisper's encoder is used). Defaults to a `Wav2Vec2Config()`.
        pooling (`str`, *optional*, defaults to `"mean"`):
            How frames become one vector: `"mean"` (masked mean) or `"attentive_stats"` (attention-weighted mean and
            standard deviation, so the head sees twice the hidden size).
        use_weighted_layer_sum (`bool`, *optional*, defaults to `False`):
            Pool a learned softmax-weighted sum of all hidden layers instead of the last one.
        head_hidden_sizes (`list[int]`, *optional*, defaults to `[512, 256]`):
            Hidden sizes of the MLP head. Each hidden layer is Linear -> BatchNorm1d -> ReLU -> Dropout (the seed's).
        head_dropout (`float`, *optional*, defaults to 0.3):
            Dropout after each hidden layer of the head.
        head_batch_norm (`bool`, *optional*, defaults to `True`):
            Put BatchNorm1d after each hidden Linear of the head (the seed's choice).
        attention_pooling_hidden (`int`, *optional*, defaults to 128):
            Hidden size of the scorer used by `"attentive_stats"` pooling.
        freeze_feature_encoder (`bool`, *optional*, defaults to `True`):
            Keep the convolutional feature encoder frozen (no gradients), as wav2vec2 fine-tuning does.
        class_weights (`list[float]`, *optional*):
            Per-class weights of the cross-entropy loss, in label-id order.
        dimensional_loss (`str`, *optional*, defaults to `"ccc"`):
            With `problem_type="regression"` (dimensional emotion: one output per dimension, e.g. arousal, valence
            and dominance, named by `id2label`): `"ccc"` trains on 1 - concordance correlation coefficient, averaged
            over the dimensions and computed over each batch; `"mse"` on the mean squared error.
        whisper_clip_length (`bool`, *optional*, defaults to `True`):
            Whisper encoders only: encode each batch at its clips' length (the positional embeddings sliced to the
            batch's mel frames, self-attention masked to each clip's frames) instead of the released 30 s window.
            Inputs padded to 30 s are cropped to the batch's longest clip first. `False`: every input is padded to
            `2 * max_source_positions` mel frames and attention runs over the padding, as released Whisper does.
    """

    model_type = "wav2vec2-ser"
    sub_configs = {"backbone_config": AutoConfig}

    def __init__(
        self,
        backbone_config: Optional[Union[dict, PretrainedConfig]] = None,
        pooling: str = "mean",
        use_weighted_layer_sum: bool = False,
        head_hidden_sizes: Optional[list] = None,
        head_dropout: float = 0.3,
        head_batch_norm: bool = True,
        attention_pooling_hidden: int = 128,
        freeze_feature_encoder: bool = True,
        class_weights: Optional[list] = None,
        dimensional_loss: str = "ccc",
        whisper_clip_length: bool = True,
        **kwargs,
    ):
        if backbone_config is None:
            backbone_config = AutoConfig.for_model("wav2vec2")
        elif isinstance(backbone_config, dict):
            backbone_config = dict(backbone_config)
            backbone_config = AutoConfig.for_model(backbone_config.pop("model_type", "wav2vec2"), **backbone_config)
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling={pooling!r} is not one of {POOLING_MODES}")
        self.backbone_config = backbone_config
        self.pooling = pooling
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.head_hidden_sizes = list(head_hidden_sizes) if head_hidden_sizes is not None else [512, 256]
        self.head_dropout = head_dropout
        self.head_batch_norm = head_batch_norm
        self.attention_pooling_hidden = attention_pooling_hidden
        self.freeze_feature_encoder = freeze_feature_encoder
        self.class_weights = list(class_weights) if class_weights is not None else None
        if dimensional_loss not in DIMENSIONAL_LOSSES:
            raise ValueError(f"dimensional_loss={dimensional_loss!r} is not one of {DIMENSIONAL_LOSSES}")
        self.dimensional_loss = dimensional_loss
        self.whisper_clip_length = whisper_clip_length
        super().__init__(**kwargs)
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} entries but the model has {self.num_labels} labels"
            )

    @property
    def encoder_hidden_size(self) -> int:
        """Width of the encoder's frame vectors (Whisper calls it d_model)."""
        return getattr(self.backbone_config, "hidden_size", None) or self.backbone_config.d_model

    @property
    def encoder_num_layers(self) -> int:
        cfg = self.backbone_config
        return getattr(cfg, "num_hidden_layers", None) or cfg.encoder_layers
