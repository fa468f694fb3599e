"""SERCNN: the "Base" CNN with head-fusion attention of Xu et al., "Head Fusion: Improving the accuracy and robustness
of speech emotion recognition on the IEMOCAP and RAVDESS dataset" (IEEE Access, 2021).

waveform -> log-Mel / MFCC (+ deltas) -> (training only, when configured) SpecAugment-style masks -> two parallel
first convolutions (time kernel, frequency kernel) -> Conv3x3-BN-ReLU(-MaxPool) blocks -> multi-head attention whose
heads' maps are fused -> masked mean -> logits.

Padding never changes a result: every stage carries a frame mask derived from `attention_mask`, padded frames are
zeroed before each convolution (so they look like the convolution's own zero padding) and never receive attention.

This file travels with every checkpoint as remote code: it imports only torch, transformers and its configuration.
"""

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.audio_utils import mel_filter_bank
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_ser_cnn import SERCNNConfig

LOG_FLOOR = 1e-6  # added to mel energies before the log, so silence gives a finite value
NORM_EPS = 1e-5  # added to the per-utterance variance, so a constant feature does not divide by zero


# Copied from hf_ser.models.modeling_wav2vec2_ser.concordance_correlation and .ser_loss (each model file travels
# alone as remote code, so the two cannot share them; tests/models check that the copies are the same)
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


def split_into_segments(
    waveform: torch.Tensor, sampling_rate: int, segment_seconds: float, hop_seconds: float
) -> torch.Tensor:
    """Overlapping fixed-length segments of a 1-D waveform, as a `(num_segments, segment_samples)` tensor.

    Segments start every `hop_seconds`; when the last one stops short of the end, one more segment ending exactly at
    the end is added so that no audio is left out. A waveform shorter than one segment is returned whole, as `(1, T)`.
    """
    if waveform.dim() != 1:
        raise ValueError(f"split_into_segments expects one 1-D waveform, got shape {tuple(waveform.shape)}")
    segment = max(1, round(segment_seconds * sampling_rate))
    hop = max(1, round(hop_seconds * sampling_rate))
    total = waveform.shape[0]
    if total <= segment:
        return waveform.unsqueeze(0)
    segments = waveform.unfold(0, segment, hop)
    last_end = (segments.shape[0] - 1) * hop + segment
    if last_end < total:
        segments = torch.cat([segments, waveform[total - segment :].unsqueeze(0)], dim=0)
    return segments


def sequence_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Boolean `(batch, max_length)` mask, True for the first `lengths[b]` positions of row b."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def front_end_buffers(config: SERCNNConfig) -> dict:
    """The fixed tensors of the feature front end: STFT window, mel filter bank and (for MFCC) the DCT-II matrix."""
    mel_filters = mel_filter_bank(
        num_frequency_bins=config.n_fft // 2 + 1,
        num_mel_filters=config.n_mels,
        min_frequency=config.f_min,
        max_frequency=config.f_max if config.f_max is not None else config.sampling_rate / 2,
        sampling_rate=config.sampling_rate,
        mel_scale=config.mel_scale,
    )
    buffers = {
        "window": torch.hann_window(config.win_length, periodic=True, dtype=torch.float32, device="cpu"),
        "mel_filters": torch.from_numpy(mel_filters).float(),
    }
    if config.feature_type == "mfcc":
        buffers["dct"] = dct_matrix(config.n_mels, config.n_mfcc)
    return buffers


def dct_matrix(n_mels: int, n_mfcc: int) -> torch.Tensor:
    """Orthonormal DCT-II as an `(n_mels, n_mfcc)` matrix: `log_mel @ dct` gives MFCCs (torchaudio's `create_dct`)."""
    n = torch.arange(n_mels, dtype=torch.float64, device="cpu")
    k = torch.arange(n_mfcc, dtype=torch.float64, device="cpu")
    dct = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_mels)
    dct[:, 0] *= 1.0 / math.sqrt(2.0)
    return dct.float()


def masked_deltas(features: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
    """Regression deltas over frames of `(batch, frames, coeffs)` features, edges repeated within each item's length.

    Same formula as HTK and torchaudio's `compute_deltas`; the edge of an item is its own last valid frame, not the
    batch padding, so a padded item gets the deltas it would get alone.
    """
    batch, frames, coeffs = features.shape
    positions = torch.arange(frames, device=features.device)[None, :]
    last = (lengths - 1).clamp(min=0)[:, None]

    def frames_at(index: torch.Tensor) -> torch.Tensor:
        return features.gather(1, index.expand(batch, -1).unsqueeze(-1).expand(-1, -1, coeffs))

    deltas = torch.zeros_like(features)
    for offset in range(1, window + 1):
        ahead = torch.minimum(positions + offset, last)
        behind = (positions - offset).clamp(min=0)
        deltas = deltas + offset * (frames_at(ahead) - frames_at(behind))
    return deltas / (2 * sum(offset**2 for offset in range(1, window + 1)))


def random_spans(count: int, max_width: int, lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Boolean `(batch, size)` mask of `count` random spans per row, each of width 0..`max_width` inside the row's
    first `lengths[b]` positions (SpecAugment's masks; drawn from torch's global generator)."""
    positions = torch.arange(size, device=lengths.device)[None, :]
    masked = torch.zeros(lengths.shape[0], size, dtype=torch.bool, device=lengths.device)
    for _ in range(count):
        widths = torch.randint(0, max_width + 1, lengths.shape, device=lengths.device).minimum(lengths)
        starts = (torch.rand(lengths.shape, device=lengths.device) * (lengths - widths + 1)).long()
        masked |= (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
    return masked


class SERCNNFrontEnd(nn.Module):
    """Waveforms to normalised `(batch, channels, frames, coeffs)` feature images and their frame lengths."""

    def __init__(self, config: SERCNNConfig):
        super().__init__()
        self.config = config
        # Not saved with the weights: they follow from the config and are rebuilt by `_init_weights`.
        for name, tensor in front_end_buffers(config).items():
            self.register_buffer(name, tensor, persistent=False)

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of a centred STFT of `num_samples` samples."""
        return num_samples // self.config.hop_length + 1

    def forward(self, waveforms: torch.Tensor, sample_lengths: torch.Tensor) -> tuple:
        config = self.config
        waveforms = waveforms.float() * sequence_mask(sample_lengths, waveforms.shape[1])
        # Zero ("constant") centring pads an item exactly as batch padding does, so frames match the item alone.
        spectrum = torch.stft(
            waveforms,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            window=self.window.float(),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spectrum.real**2 + spectrum.imag**2  # (batch, freqs, frames)
        features = torch.log(power.transpose(1, 2) @ self.mel_filters.float() + LOG_FLOOR)
        if config.feature_type == "mfcc":
            features = features @ self.dct.float()
        frame_lengths = self.num_frames(sample_lengths).clamp(max=features.shape[1])
        channels = [features]
        if config.use_deltas:
            deltas = masked_deltas(features, frame_lengths, config.delta_window)
            channels += [deltas, masked_deltas(deltas, frame_lengths, config.delta_window)]
        images = torch.stack(channels, dim=1)  # (batch, channels, frames, coeffs)

        frame_mask = sequence_mask(frame_lengths, images.shape[2])[:, None, :, None].to(images.dtype)
        count = frame_lengths.to(images.dtype)[:, None, None, None]
        mean = (images * frame_mask).sum(dim=2, keepdim=True) / count
        variance = (((images - mean) * frame_mask) ** 2).sum(dim=2, keepdim=True) / count
        images = (images - mean) / torch.sqrt(variance + NORM_EPS) * frame_mask
        if self.training and (config.time_masks or config.frequency_masks):
            batch, _, frames, coeffs = images.shape
            time_masked = random_spans(config.time_masks, config.time_mask_frames, frame_lengths, frames)
            all_coeffs = torch.full_like(frame_lengths, coeffs)
            frequency_masked = random_spans(config.frequency_masks, config.frequency_mask_bins, all_coeffs, coeffs)
            keep = ~(time_masked[:, None, :, None] | frequency_masked[:, None, None, :])
            images = images * keep.to(images.dtype)
        return images, frame_lengths


class SERCNNSameConv2d(nn.Conv2d):
    """Conv2d with 'same' output size for any kernel, even ones: the extra row/column of padding goes after, as
    PyTorch's `padding="same"` does (done here explicitly, which avoids that mode's copy-and-warn path)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple):
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, bias=False)
        (time, freq) = kernel_size
        self.same_padding = ((freq - 1) // 2, freq // 2, (time - 1) // 2, time // 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(images, self.same_padding))


class SERCNNConvBlock(nn.Module):
    """Conv3x3 -> BatchNorm -> ReLU, then an optional 2x2 max pool; padded frames come out as zeros."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(kernel_size=2) if pool else None

    def forward(self, images: torch.Tensor, frame_lengths: torch.Tensor) -> tuple:
        images = F.relu(self.norm(self.conv(images)))
        if self.pool is not None:
            images = self.pool(images)
            # A pooled frame is valid when both of its input frames are; keep at least one so short inputs still score.
            frame_lengths = (frame_lengths // 2).clamp(min=1)
        mask = sequence_mask(frame_lengths, images.shape[2])[:, None, :, None]
        return images * mask.to(images.dtype), frame_lengths


class SERCNNHeadFusionAttention(nn.Module):
    """Multi-head self-attention over time-frequency positions whose heads' attention maps are averaged ("fused")
    into one map, which then mixes every head's values; a linear layer projects the result to `attention_hidden`."""

    def __init__(self, channels: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.hidden = hidden
        # One Linear per role holds all heads side by side: per-position 1x1 projections, as in the paper.
        self.query = nn.Linear(channels, heads * hidden)
        self.key = nn.Linear(channels, heads * hidden)
        self.value = nn.Linear(channels, heads * hidden)
        self.output = nn.Linear(heads * hidden, hidden)

    def forward(self, positions: torch.Tensor, position_mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = positions.shape
        heads, hidden = self.heads, self.hidden
        query = self.query(positions).view(batch, length, heads, hidden).transpose(1, 2).reshape(-1, length, hidden)
        key = self.key(positions).view(batch, length, heads, hidden).permute(0, 2, 3, 1).reshape(-1, hidden, length)
        # Padded keys get a large negative bias; one baddbmm scales, masks and multiplies without extra passes over
        # the (batch * heads, length, length) scores, which dominate this model's time and memory.
        bias = torch.zeros(batch, 1, 1, length, dtype=query.dtype, device=query.device)
        bias = bias.masked_fill(~position_mask[:, None, None, :], torch.finfo(query.dtype).min)
        bias = bias.expand(batch, heads, 1, length).reshape(-1, 1, length)
        scores = torch.baddbmm(bias, query, key, alpha=1.0 / math.sqrt(hidden))
        attention = scores.softmax(dim=-1, dtype=torch.float32).view(batch, heads, length, length)
        fused_map = attention.mean(dim=1).to(positions.dtype)  # head fusion: (batch, length, length)
        return self.output(fused_map @ self.value(positions))


class SERCNNPreTrainedModel(PreTrainedModel):
    config_class = SERCNNConfig
    accepts_loss_kwargs = False  # the loss is a per-example mean: the Trainer scales it for gradient accumulation
    base_model_prefix = "ser_cnn"
    main_input_name = "input_values"
    # The default model has about 172k parameters; a device map gains nothing from splitting these.
    _no_split_modules = ["SERCNNFrontEnd", "SERCNNHeadFusionAttention"]

    # Copied from hf_ser.models.modeling_wav2vec2_ser.Wav2Vec2SERPreTrainedModel.save_pretrained (each model file
    # travels alone as remote code, so the two cannot share it)
    def save_pretrained(self, *args, **kwargs):
        # `register_for_auto_class` records one Auto class; the checkpoint must resolve with AutoModel as well.
        if getattr(self, "_auto_class", None) is not None:
            entry = f"{__name__.rsplit('.', 1)[-1]}.{type(self).__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": entry}
        return super().save_pretrained(*args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, SERCNNFrontEnd):
            # from_pretrained builds the model on the meta device and leaves non-persistent buffers empty.
            for name, tensor in front_end_buffers(self.config).items():
                init.copy_(getattr(module, name), tensor)


class SERCNN(SERCNNPreTrainedModel):
    """Speech emotion recognition from raw waveforms: features, CNN, head-fusion attention, masked mean, logits."""

    def __init__(self, config: SERCNNConfig):
        super().__init__(config)
        self.front_end = SERCNNFrontEnd(config)
        in_channels, first = config.num_feature_channels, config.first_conv_channels
        self.time_conv = SERCNNSameConv2d(in_channels, first, tuple(config.time_kernel))
        self.time_norm = nn.BatchNorm2d(first)
        self.frequency_conv = SERCNNSameConv2d(in_channels, first, tuple(config.frequency_kernel))
        self.frequency_norm = nn.BatchNorm2d(first)
        blocks, channels = [], 2 * first
        for index, out_channels in enumerate(config.block_channels):
            blocks.append(SERCNNConvBlock(channels, out_channels, pool=index in config.pool_blocks))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.attention = SERCNNHeadFusionAttention(channels, config.attention_heads, config.attention_hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.attention_hidden, config.num_labels)
        self.post_init()

    split_into_segments = staticmethod(split_into_segments)

    @staticmethod
    def sample_lengths(input_values: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Number of real samples per item (padding is assumed at the end, as the collator puts it)."""
        if attention_mask is None:
            return torch.full((input_values.shape[0],), input_values.shape[1], device=input_values.device)
        return attention_mask.long().sum(dim=-1)

    def utterance_logits(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Logits of each waveform taken whole: `(batch, num_labels)`."""
        images, frame_lengths = self.front_end(input_values, sample_lengths)
        images = images.to(self.time_conv.weight.dtype)
        min_frames = 2 ** len(self.config.pool_blocks)  # so every pool still has a frame to keep
        if images.shape[2] < min_frames:
            images = F.pad(images, (0, 0, 0, min_frames - images.shape[2]))
        frame_mask = sequence_mask(frame_lengths, images.shape[2])[:, None, :, None].to(images.dtype)
        time_features = F.relu(self.time_norm(self.time_conv(images)))
        frequency_features = F.relu(self.frequency_norm(self.frequency_conv(images)))
        hidden = torch.cat([time_features, frequency_features], dim=1) * frame_mask
        for block in self.blocks:
            hidden, frame_lengths = block(hidden, frame_lengths)

        batch, channels, frames, coeffs = hidden.shape
        positions = hidden.permute(0, 2, 3, 1).reshape(batch, frames * coeffs, channels)
        position_mask = sequence_mask(frame_lengths, frames).repeat_interleave(coeffs, dim=1)
        attended = F.relu(self.attention(positions, position_mask))
        weights = position_mask.unsqueeze(-1).to(attended.dtype)
        pooled = (attended * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))

    def segment_logits(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Logits of each waveform as the mean of the logits of its overlapping segments: `(batch, num_labels)`."""
        config = self.config
        segments, counts = [], []
        for waveform, length in zip(input_values, sample_lengths.tolist()):
            pieces = split_into_segments(
                waveform[:length], config.sampling_rate, config.segment_seconds, config.segment_hop_seconds
            )
            segments.extend(pieces.unbind(0))
            counts.append(pieces.shape[0])
        segment_lengths = torch.tensor([piece.shape[0] for piece in segments], device=input_values.device)
        batch = nn.utils.rnn.pad_sequence(segments, batch_first=True)
        logits = self.utterance_logits(batch, segment_lengths)
        counts = torch.tensor(counts, device=logits.device)
        owners = torch.repeat_interleave(torch.arange(len(counts), device=logits.device), counts)
        summed = logits.new_zeros(len(counts), logits.shape[1]).index_add_(0, owners, logits)
        return summed / counts[:, None].to(logits.dtype)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        return_dict: Optional[bool] = None,
        aggregate_segments: Optional[bool] = None,
        **kwargs,
    ) -> Union[tuple, SequenceClassifierOutput]:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`): raw waveforms at `config.sampling_rate`.
        attention_mask (`torch.LongTensor` of shape `(batch, samples)`): 1 for real samples, 0 for end padding.
        labels (`torch.LongTensor` of shape `(batch,)`): class ids, the loss (class-weighted) cross-entropy; for
            `problem_type="regression"` a `(batch, num_labels)` float tensor of dimension values (`ser_loss`).
        aggregate_segments (`bool`, *optional*): score each utterance as the mean over its segments. Defaults to
            `config.aggregate_segments` in evaluation mode and to `False` in training mode.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if aggregate_segments is None:
            aggregate_segments = self.config.aggregate_segments and not self.training
        sample_lengths = self.sample_lengths(input_values, attention_mask)
        if aggregate_segments:
            logits = self.segment_logits(input_values, sample_lengths)
        else:
            logits = self.utterance_logits(input_values, sample_lengths)

        loss = None
        if labels is not None:
            loss = ser_loss(logits, labels, self.config)

        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return SequenceClassifierOutput(loss=loss, logits=logits)
