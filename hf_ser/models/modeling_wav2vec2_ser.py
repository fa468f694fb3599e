"""Wav2Vec2SER: a speech encoder from `AutoModel`, masked frame pooling and the seed's MLP head.

This file travels with every checkpoint as remote code: it imports only torch, transformers and its configuration.
"""

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_wav2vec2_ser import Wav2Vec2SERConfig

# Where the encoder's tensors sit in checkpoints saved from a whole Whisper model (WhisperForConditionalGeneration:
# `model.encoder.*`, WhisperModel: `encoder.*`). The wav2vec2 family needs none: `from_pretrained` of the bare encoder
# strips its task classes' prefix (`wav2vec2.`, `hubert.`, `wavlm.`) itself.
WHISPER_ENCODER_KEYS = {r"^(model\.)?encoder\.": ""}
# Mel frames a clip-length Whisper input keeps past its last real frame. The last real encoder frame reads two mel
# frames past the clip (conv1: kernel 3; conv2: kernel 3, stride 2), and the STFT window reaches 200 samples (n_fft / 2)
# past a frame's centre: with three, a clip's last input frame is one of pure padding, and every frame its real encoder
# frames read has the value the 30 s features have there. So a clip gets the same logits at its own length as padded
# in any longer batch (or cropped from 30 s features).
WHISPER_MARGIN_FRAMES = 3


def concordance_correlation(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Lin's concordance correlation coefficient of each column of two `(batch, dimensions)` tensors, with population
    moments: 2 cov / (var_p + var_t + (mean_p - mean_t)^2). (hf_ser.evaluation.metrics scores with the same formula.)"""
    prediction_mean, target_mean = predictions.mean(dim=0), targets.mean(dim=0)
    covariance = ((predictions - prediction_mean) * (targets - target_mean)).mean(dim=0)
    spread = predictions.var(dim=0, unbiased=False) + targets.var(dim=0, unbiased=False)
    return 2 * covariance / (spread + (prediction_mean - target_mean) ** 2).clamp(min=1e-8)


def ser_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The loss the config names: for `problem_type="regression"` (one output per emotion dimension) 1 - CCC averaged
    over the dimensions (`dimensional_loss="ccc"`, over the batch) or the mean squared error (`"mse"`); otherwise
    cross-entropy over class ids, weighted by `class_weights` when set."""
    logits = logits.float()
    if config.problem_type == "regression":
        targets = labels.to(logits.dtype).view_as(logits)
        if config.dimensional_loss == "mse":
            return F.mse_loss(logits, targets)
        return (1 - concordance_correlation(logits, targets)).mean()
    weight = None
    if config.class_weights is not None:
        weight = torch.tensor(config.class_weights, dtype=torch.float32, device=logits.device)
    return F.cross_entropy(logits, labels.view(-1), weight=weight)


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that accepts a training batch of one example.

    Batch statistics of a single example are undefined (PyTorch raises). For such a batch this layer normalises with
    its running statistics, as in evaluation, and leaves them untouched; gradients still flow through the affine
    parameters. Any batch of two or more behaves exactly like `nn.BatchNorm1d`.
    """

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.training and hidden.shape[0] == 1:
            return F.batch_norm(
                hidden, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(hidden)


class SERHead(nn.Sequential):
    """The seed's classifier: [Linear -> BatchNorm1d -> ReLU -> Dropout] per hidden size, then Linear to the labels."""

    def __init__(self, input_size: int, hidden_sizes: list, num_labels: int, dropout: float, batch_norm: bool = True):
        layers = []
        for size in hidden_sizes:
            layers += [nn.Linear(input_size, size)]
            if batch_norm:
                layers += [SafeBatchNorm1d(size)]
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            input_size = size
        layers += [nn.Linear(input_size, num_labels)]
        super().__init__(*layers)


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over valid frames (Okabe et al., Interspeech 2018)."""

    def __init__(self, hidden_size: int, attention_hidden: int):
        super().__init__()
        self.scorer = nn.Sequential(nn.Linear(hidden_size, attention_hidden), nn.Tanh(), nn.Linear(attention_hidden, 1))

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        scores = self.scorer(frames).squeeze(-1).float()
        scores = scores.masked_fill(~frame_mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1).unsqueeze(-1).to(frames.dtype)
        mean = (weights * frames).sum(dim=1)
        variance = (weights * (frames - mean.unsqueeze(1)) ** 2).sum(dim=1)
        return torch.cat([mean, variance.clamp(min=1e-6).sqrt()], dim=-1)


def masked_mean(frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    weights = frame_mask.unsqueeze(-1).to(frames.dtype)
    return (frames * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class Wav2Vec2SERPreTrainedModel(PreTrainedModel):
    config_class = Wav2Vec2SERConfig
    # The loss is a per-example mean: the Trainer must scale it for gradient accumulation (it would assume the model
    # does so itself if forward took `**kwargs` and this were not set), so k x b and 1 x kb give the same update.
    accepts_loss_kwargs = False
    base_model_prefix = "ser"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def save_pretrained(self, *args, **kwargs):
        # `register_for_auto_class` records one Auto class; the checkpoint must resolve with AutoModel as well.
        if getattr(self, "_auto_class", None) is not None:
            entry = f"{__name__.rsplit('.', 1)[-1]}.{type(self).__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": entry}
        return super().save_pretrained(*args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only the layers this file adds; the encoder keeps its own initialisation (or its pretrained weights).
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if module.running_mean is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()
        elif isinstance(module, Wav2Vec2SER) and module.layer_weights is not None:
            module.layer_weights.fill_(1.0 / module.layer_weights.numel())


def build_encoder(backbone_config) -> nn.Module:
    """The encoder part of any audio model AutoModel knows; for Whisper only its encoder."""
    if backbone_config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(backbone_config)
    return AutoModel.from_config(backbone_config)


def apply_backbone_overrides(backbone_config, overrides: Optional[dict]):
    """Set encoder config values (layerdrop, mask_time_prob, dropouts, ...); a key the config lacks is refused."""
    for key, value in (overrides or {}).items():
        if not hasattr(backbone_config, key):
            raise ValueError(
                f"backbone_overrides: {type(backbone_config).__name__} has no setting {key!r} "
                f"(model_type {backbone_config.model_type!r})"
            )
        setattr(backbone_config, key, value)
    return backbone_config


def load_pretrained_encoder(encoder_class: type, name_or_path: str, backbone_config, **kwargs) -> nn.Module:
    """The checkpoint's encoder with every tensor read from its files, in float32 unless `dtype` is given.

    Refuses a checkpoint that lacks any encoder tensor (or holds one of another shape), naming them: a partly
    random encoder would train without an error and only show as poor results.
    """
    kwargs.setdefault("dtype", torch.float32)
    key_mapping = WHISPER_ENCODER_KEYS if backbone_config.model_type == "whisper" else None
    encoder, info = encoder_class.from_pretrained(
        name_or_path, config=backbone_config, key_mapping=key_mapping, output_loading_info=True, **kwargs
    )
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(
        str(entry[0] if isinstance(entry, tuple) else entry) for entry in info.get("mismatched_keys") or []
    )
    if missing or mismatched:
        problems = [f"{len(missing)} missing"] if missing else []
        problems += [f"{len(mismatched)} of another shape"] if mismatched else []
        raise ValueError(
            f"{name_or_path} does not hold the weights of a {encoder_class.__name__}: {' and '.join(problems)} "
            f"encoder tensors, e.g. {(missing + mismatched)[:6]}. Point `backbone` at a checkpoint of this encoder "
            "(or use `backbone_config` for a randomly initialised one)"
        )
    return encoder


def encodes_clips_alone(config: Wav2Vec2SERConfig) -> bool:
    """Whether the encoder normalises over the whole input (group-norm conv front end: wav2vec2-base, WavLM-base-plus,
    HuBERT-base), so that padded batches must be encoded clip by clip to give each clip its own result."""
    backbone = config.backbone_config
    return backbone.model_type != "whisper" and getattr(backbone, "feat_extract_norm", "layer") == "group"


def encodes_whisper_at_clip_length(config) -> bool:
    """Whether the model is a Whisper-encoder Wav2Vec2SER that encodes clips at their length (`whisper_clip_length`)."""
    backbone = getattr(config, "backbone_config", None)
    return getattr(backbone, "model_type", None) == "whisper" and bool(getattr(config, "whisper_clip_length", False))


def whisper_clip_frames(valid_frames: int, max_frames: int) -> int:
    """Mel frames a clip-length Whisper batch is encoded with when its longest clip has `valid_frames` real frames:
    `WHISPER_MARGIN_FRAMES` more, rounded up to an even count (conv2 has stride 2), at most the encoder's `max_frames`
    (2 * max_source_positions: 3000 = 30 s for released checkpoints)."""
    frames = int(valid_frames) + WHISPER_MARGIN_FRAMES
    return min(frames + frames % 2, int(max_frames))


def mel_frame_mask(attention_mask: torch.Tensor, num_mel_frames: int) -> torch.Tensor:
    """Whisper's mask over mel frames. `WhisperFeatureExtractor` called without `return_attention_mask=True` (as
    `pipeline("audio-classification")` calls it) but saved with `return_attention_mask: true` returns its mask over
    *samples*; one mel frame per `hop_length` samples, as the extractor itself rescales it."""
    length = attention_mask.shape[-1]
    if length == num_mel_frames:
        return attention_mask
    if length % num_mel_frames:
        raise ValueError(
            f"attention_mask has {length} positions for {num_mel_frames} mel frames: pass the mask the feature "
            "extractor returns with return_attention_mask=True"
        )
    return attention_mask[:, :: length // num_mel_frames]


class Wav2Vec2SER(Wav2Vec2SERPreTrainedModel):
    """Speech emotion recognition: encoder -> masked pooling over frames -> MLP head -> logits."""

    def __init__(self, config: Wav2Vec2SERConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.backbone_config)
        hidden = config.encoder_hidden_size
        num_layers = config.encoder_num_layers + 1  # the embedding output counts as a layer
        self.layer_weights = (
            nn.Parameter(torch.ones(num_layers) / num_layers) if config.use_weighted_layer_sum else None
        )
        if config.pooling == "attentive_stats":
            self.attentive_pooling = AttentiveStatisticsPooling(hidden, config.attention_pooling_hidden)
            pooled_size = 2 * hidden
        else:
            self.attentive_pooling = None
            pooled_size = hidden
        self.head = SERHead(
            pooled_size, config.head_hidden_sizes, config.num_labels, config.head_dropout, config.head_batch_norm
        )
        self.post_init()
        if config.freeze_feature_encoder:
            self.freeze_feature_encoder()

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str,
        num_labels: Optional[int] = None,
        id2label: Optional[dict] = None,
        backbone_overrides: Optional[dict] = None,
        **kwargs,
    ) -> "Wav2Vec2SER":
        """A new SER model around pretrained encoder weights (Hub id or local folder); the head starts random.

        Every encoder tensor comes from the checkpoint, whatever class it was saved from (`Wav2Vec2ForCTC`,
        `HubertForSequenceClassification`, `WhisperForConditionalGeneration`, bare `WavLMModel`, ...); a checkpoint
        that lacks some is refused, naming them. `backbone_overrides` (e.g. `{"layerdrop": 0.0, "mask_time_prob":
        0.0}`) change the encoder's config and are saved with the model. Keyword arguments that name
        `Wav2Vec2SERConfig` fields configure the head; the rest (e.g. `cache_dir`, `revision`) go to `from_pretrained`.
        """
        config_keys = set(Wav2Vec2SERConfig().to_dict()) | {"label2id"}
        config_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in config_keys}
        backbone_config = apply_backbone_overrides(
            AutoConfig.from_pretrained(name_or_path, **kwargs), backbone_overrides
        )
        if id2label is not None:
            id2label = {int(i): label for i, label in id2label.items()}
            num_labels = len(id2label)
            config_kwargs.setdefault("label2id", {label: i for i, label in id2label.items()})
        config = Wav2Vec2SERConfig(
            backbone_config=backbone_config, num_labels=num_labels, id2label=id2label, **config_kwargs
        )
        model = cls(config)
        pretrained = load_pretrained_encoder(type(model.encoder), name_or_path, backbone_config, **kwargs)
        model.encoder.load_state_dict(pretrained.state_dict(), strict=True)
        del pretrained
        if config.freeze_feature_encoder:
            model.freeze_feature_encoder()
        return model

    def feature_encoder(self) -> Optional[nn.Module]:
        """The convolutional front end of the encoder: the wav2vec2 family's conv feature encoder (HuBERT, WavLM and
        data2vec-audio included), Whisper's two input convolutions; None for encoders without one (Wav2Vec2-BERT)."""
        front = getattr(self.encoder, "feature_extractor", None)
        if isinstance(front, nn.Module):
            return front
        if isinstance(getattr(self.encoder, "conv1", None), nn.Module) and hasattr(self.encoder, "conv2"):
            return nn.ModuleList([self.encoder.conv1, self.encoder.conv2])
        return None

    def freeze_feature_encoder(self, frozen: bool = True) -> None:
        """Stop (or restore) gradients through the convolutional front end (see `feature_encoder`)."""
        front = self.feature_encoder()
        if front is None:
            return
        for parameter in front.parameters():
            parameter.requires_grad = not frozen
        if hasattr(front, "_requires_grad"):  # wav2vec2-family encoders read it to skip their conv gradients
            front._requires_grad = not frozen

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the whole encoder; the feature encoder stays frozen when the config says so."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad = not frozen
        front = self.feature_encoder()
        if hasattr(front, "_requires_grad"):
            front._requires_grad = not frozen
        if not frozen and self.config.freeze_feature_encoder:
            self.freeze_feature_encoder()

    def _encoder_takes_attention_mask(self) -> bool:
        # Group-norm wav2vec2 checkpoints (base) were trained on unpadded audio and must not get a mask;
        # layer-norm ones (large-lv60, HuBERT-large, WavLM) need it. See the Wav2Vec2 docs on `attention_mask`.
        return getattr(self.config.backbone_config, "feat_extract_norm", "layer") == "layer"

    def _encodes_clips_alone(self, attention_mask: Optional[torch.Tensor]) -> bool:
        """Group-norm conv encoders normalise each channel over the whole input, padding included: a clip padded
        in a batch gets other features than alone. Such batches are encoded clip by clip, unpadded."""
        if attention_mask is None or not encodes_clips_alone(self.config) or torch.compiler.is_exporting():
            return False  # an exported graph encodes its batch as given; OnnxSERModel feeds it one clip at a time
        return bool((attention_mask == 0).any())

    def frame_mask(
        self, num_frames: int, attention_mask: Optional[torch.Tensor], batch_size: int, device
    ) -> torch.Tensor:
        """Boolean (batch, frames) mask of encoder frames that come from real (unpadded) input."""
        if attention_mask is None:
            return torch.ones(batch_size, num_frames, dtype=torch.bool, device=device)
        if hasattr(self.encoder, "_get_feature_vector_attention_mask"):
            return self.encoder._get_feature_vector_attention_mask(num_frames, attention_mask).bool()
        # Whisper: the mask is over mel frames; the encoder's second convolution halves them (stride 2).
        lengths = (attention_mask.sum(-1) - 1) // 2 + 1
        return torch.arange(num_frames, device=device)[None, :] < lengths[:, None]

    def _encode(self, inputs: torch.Tensor, attention_mask: Optional[torch.Tensor], output_hidden_states: bool):
        """Encoder frames (the last layer, or the learned layer sum), their hidden states when asked, and the mask."""
        want_all_layers = self.config.use_weighted_layer_sum or output_hidden_states
        if self._encodes_clips_alone(attention_mask):
            lengths = attention_mask.sum(-1).tolist()
            clips = [self._encode(inputs[i : i + 1, :n], None, output_hidden_states) for i, n in enumerate(lengths)]
            frames = nn.utils.rnn.pad_sequence([clip[0][0] for clip in clips], batch_first=True)
            mask = nn.utils.rnn.pad_sequence([clip[2][0] for clip in clips], batch_first=True)
            hidden_states = None
            if output_hidden_states:
                hidden_states = tuple(
                    nn.utils.rnn.pad_sequence([clip[1][layer][0] for clip in clips], batch_first=True)
                    for layer in range(len(clips[0][1]))
                )
            return frames, hidden_states, mask
        if encodes_whisper_at_clip_length(self.config):
            last_hidden_state, all_hidden_states = self._encode_whisper_at_clip_length(inputs, attention_mask)
        else:
            encoder_mask = attention_mask if self._encoder_takes_attention_mask() else None
            if self.config.backbone_config.model_type == "whisper":
                encoder_mask = None  # the 30 s path: Whisper's encoder ignores masks; pooling skips the padding
            outputs = self.encoder(
                inputs, attention_mask=encoder_mask, output_hidden_states=want_all_layers, return_dict=True
            )
            last_hidden_state, all_hidden_states = outputs.last_hidden_state, outputs.hidden_states
        if self.config.use_weighted_layer_sum:
            stacked = torch.stack(all_hidden_states, dim=0)
            weights = self.layer_weights.softmax(dim=-1).to(stacked.dtype).view(-1, 1, 1, 1)
            frames = (stacked * weights).sum(dim=0)
        else:
            frames = last_hidden_state
        mask = self.frame_mask(frames.shape[1], attention_mask, frames.shape[0], frames.device)
        return frames, (all_hidden_states if output_hidden_states else None), mask

    @property
    def whisper_max_frames(self) -> int:
        """Mel frames of the released Whisper window: 2 * max_source_positions (3000 = 30 s)."""
        return 2 * int(self.config.backbone_config.max_source_positions)

    def _encode_whisper_at_clip_length(self, inputs: torch.Tensor, attention_mask: Optional[torch.Tensor]):
        """WhisperEncoder's forward at the input's length: its own layers, the positional embeddings sliced to the
        frames given, self-attention masked to each clip's frames. (`WhisperEncoder.forward` refuses any input but
        2 * max_source_positions frames.) Returns the last hidden state and all hidden states, embedding output first,
        the last one after the final layer norm, as `WhisperEncoder` returns them."""
        encoder = self.encoder
        if not torch.compiler.is_exporting() and inputs.shape[-1] > self.whisper_max_frames:
            raise ValueError(
                f"input_features have {inputs.shape[-1]} mel frames; this Whisper encoder has positional embeddings "
                f"for {self.whisper_max_frames} (2 * max_source_positions): crop or split the audio"
            )
        embeds = F.gelu(encoder.conv1(inputs))
        embeds = F.gelu(encoder.conv2(embeds)).permute(0, 2, 1)
        hidden = embeds + encoder.embed_positions.weight[: embeds.shape[1]]
        hidden = F.dropout(hidden, p=encoder.dropout, training=encoder.training)
        frame_mask = self.frame_mask(hidden.shape[1], attention_mask, hidden.shape[0], hidden.device)
        # None when no clip is padded: then the layers run exactly as in WhisperEncoder.forward
        attention = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=frame_mask)
        hidden_states = [hidden]
        for layer in encoder.layers:
            if encoder.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop:
                continue  # LayerDrop, as WhisperEncoder applies it
            hidden = layer(hidden, attention)
            hidden_states.append(hidden)
        hidden = encoder.layer_norm(hidden)
        hidden_states[-1] = hidden
        return hidden, tuple(hidden_states)

    def forward(
        self,
        input_values: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        input_features: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> Union[tuple, SequenceClassifierOutput]:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`): raw 16 kHz waveforms (wav2vec2 family).
        input_features (`torch.FloatTensor` of shape `(batch, mels, frames)`): log-Mel features (Whisper).
        attention_mask (`torch.LongTensor`): 1 for real samples (or mel frames), 0 for padding. Always used for
            pooling; passed to the encoder only when the encoder was trained with it.
        labels (`torch.LongTensor` of shape `(batch,)`): class ids, the loss cross-entropy; for `problem_type="regression"`
            a `(batch, num_labels)` float tensor of dimension values, the loss `config.dimensional_loss` (`ser_loss`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        inputs = input_features if input_features is not None else input_values
        if inputs is None:
            raise ValueError("Wav2Vec2SER needs `input_values` (waveforms) or `input_features` (Whisper log-Mel)")
        if attention_mask is not None and self.config.backbone_config.model_type == "whisper":
            attention_mask = mel_frame_mask(attention_mask, inputs.shape[-1])
            if encodes_whisper_at_clip_length(self.config) and not torch.compiler.is_exporting():
                # e.g. the pipeline's 30 s features: encode only the frames the longest clip needs (an exported graph
                # takes the frames it is given; hf-ser feeds it clip-length features)
                frames = whisper_clip_frames(attention_mask.sum(-1).max(), self.whisper_max_frames)
                inputs, attention_mask = inputs[..., :frames], attention_mask[:, :frames]
        frames, hidden_states, mask = self._encode(inputs, attention_mask, bool(output_hidden_states))
        pooled = (
            self.attentive_pooling(frames, mask) if self.attentive_pooling is not None else masked_mean(frames, mask)
        )
        logits = self.head(pooled)

        loss = None
        if labels is not None:
            loss = ser_loss(logits, labels, self.config)

        if not return_dict:
            output = (logits,) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)
