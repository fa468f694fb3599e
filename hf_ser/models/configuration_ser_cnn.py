"""Configuration of SERCNN, the "Base" CNN with head-fusion attention (Xu et al., IEEE Access 2021).

This file travels with every checkpoint as remote code: it imports only transformers.
"""

from typing import Optional

from transformers import PretrainedConfig

FEATURE_TYPES = ("mfcc", "logmel")
MEL_SCALES = ("htk", "slaney", "kaldi")
DIMENSIONAL_LOSSES = ("ccc", "mse")  # losses of `problem_type="regression"` (dimensional emotion)


class SERCNNConfig(PretrainedConfig):
    r"""
    The model reads raw waveforms and computes its own features, so every setting of the front end is here too.

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate of `input_values`, in Hz.
        n_fft (`int`, *optional*, defaults to 512):
            FFT size of the short-time Fourier transform.
        win_length (`int`, *optional*, defaults to 400):
            Hann window length in samples (25 ms at 16 kHz).
        hop_length (`int`, *optional*, defaults to 160):
            Frame shift in samples (10 ms at 16 kHz).
        n_mels (`int`, *optional*, defaults to 40):
            Number of mel filters.
        f_min (`float`, *optional*, defaults to 0.0):
            Lowest frequency of the mel filter bank, in Hz.
        f_max (`float`, *optional*):
            Highest frequency of the mel filter bank, in Hz; defaults to `sampling_rate / 2`.
        mel_scale (`str`, *optional*, defaults to `"htk"`):
            Mel scale of the filter bank: `"htk"`, `"slaney"` or `"kaldi"`.
        feature_type (`str`, *optional*, defaults to `"mfcc"`):
            `"mfcc"` (DCT-II of the log-Mel spectrogram, as in the paper) or `"logmel"`.
        n_mfcc (`int`, *optional*, defaults to 26):
            Number of cepstral coefficients kept when `feature_type="mfcc"`.
        use_deltas (`bool`, *optional*, defaults to `False`):
            Add deltas and delta-deltas as two extra input channels (the paper uses one channel).
        delta_window (`int`, *optional*, defaults to 2):
            Half-width N of the regression window of the deltas (5 frames for N=2).
        time_masks (`int`, *optional*, defaults to 0):
            SpecAugment-style masking in training only: how many spans of frames are zeroed per item (after the
            per-utterance normalisation, so a masked frame equals the utterance mean). Evaluation never masks.
        time_mask_frames (`int`, *optional*, defaults to 20):
            Longest masked span of frames; each span's width is drawn uniformly from 0 to this.
        frequency_masks (`int`, *optional*, defaults to 0):
            How many bands of coefficients are zeroed per item in training (all channels of the band).
        frequency_mask_bins (`int`, *optional*, defaults to 8):
            Widest masked band of coefficients; each band's width is drawn uniformly from 0 to this.
        first_conv_channels (`int`, *optional*, defaults to 8):
            Output channels of each of the two parallel first convolutions (time kernel and frequency kernel).
        time_kernel (`list[int]`, *optional*, defaults to `[10, 2]`):
            (frames, coefficients) kernel of the first convolution that looks along time.
        frequency_kernel (`list[int]`, *optional*, defaults to `[2, 8]`):
            (frames, coefficients) kernel of the first convolution that looks along frequency.
        block_channels (`list[int]`, *optional*, defaults to `[32, 48, 64, 80]`):
            Output channels of the 3x3 Conv -> BatchNorm -> ReLU blocks.
        pool_blocks (`list[int]`, *optional*, defaults to `[0, 1]`):
            Indices (0-based) of the blocks followed by a 2x2 max pool.
        attention_heads (`int`, *optional*, defaults to 4):
            Number of attention heads whose attention maps are fused (averaged).
        attention_hidden (`int`, *optional*, defaults to 64):
            Width of each head's queries, keys and values, and of the attention output.
        dropout (`float`, *optional*, defaults to 0.3):
            Dropout before the classifier.
        segment_seconds (`float`, *optional*, defaults to 2.0):
            Segment length used when an utterance is scored as the average over its segments.
        segment_hop_seconds (`float`, *optional*, defaults to 1.0):
            Step between the starts of consecutive segments.
        aggregate_segments (`bool`, *optional*, defaults to `True`):
            In evaluation, split every utterance into segments and average their logits (the paper's test protocol).
            Training always sees the waveforms it is given.
        class_weights (`list[float]`, *optional*):
            Per-class weights of the cross-entropy loss, in label-id order.
        dimensional_loss (`str`, *optional*, defaults to `"ccc"`):
            With `problem_type="regression"` (dimensional emotion: one output per dimension, e.g. arousal, valence
            and dominance, named by `id2label`): `"ccc"` trains on 1 - concordance correlation coefficient, averaged
            over the dimensions and computed over each batch; `"mse"` on the mean squared error.
    """

    model_type = "ser-cnn"

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: Optional[float] = None,
        mel_scale: str = "htk",
        feature_type: str = "mfcc",
        n_mfcc: int = 26,
        use_deltas: bool = False,
        delta_window: int = 2,
        time_masks: int = 0,
        time_mask_frames: int = 20,
        frequency_masks: int = 0,
        frequency_mask_bins: int = 8,
        first_conv_channels: int = 8,
        time_kernel: Optional[list] = None,
        frequency_kernel: Optional[list] = None,
        block_channels: Optional[list] = None,
        pool_blocks: Optional[list] = None,
        attention_heads: int = 4,
        attention_hidden: int = 64,
        dropout: float = 0.3,
        segment_seconds: float = 2.0,
        segment_hop_seconds: float = 1.0,
        aggregate_segments: bool = True,
        class_weights: Optional[list] = None,
        dimensional_loss: str = "ccc",
        **kwargs,
    ):
        if feature_type not in FEATURE_TYPES:
            raise ValueError(f"feature_type={feature_type!r} is not one of {FEATURE_TYPES}")
        if mel_scale not in MEL_SCALES:
            raise ValueError(f"mel_scale={mel_scale!r} is not one of {MEL_SCALES}")
        if win_length > n_fft:
            raise ValueError(f"win_length={win_length} must not exceed n_fft={n_fft}")
        if feature_type == "mfcc" and n_mfcc > n_mels:
            raise ValueError(f"n_mfcc={n_mfcc} must not exceed n_mels={n_mels}")
        if segment_seconds <= 0 or segment_hop_seconds <= 0:
            raise ValueError(
                f"segment_seconds={segment_seconds} and segment_hop_seconds={segment_hop_seconds} must be positive"
            )
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.mel_scale = mel_scale
        self.feature_type = feature_type
        self.n_mfcc = n_mfcc
        self.use_deltas = use_deltas
        self.delta_window = delta_window
        if min(time_masks, time_mask_frames, frequency_masks, frequency_mask_bins) < 0:
            raise ValueError(
                f"time_masks={time_masks}, time_mask_frames={time_mask_frames}, frequency_masks={frequency_masks} and "
                f"frequency_mask_bins={frequency_mask_bins} must not be negative"
            )
        self.time_masks = time_masks
        self.time_mask_frames = time_mask_frames
        self.frequency_masks = frequency_masks
        self.frequency_mask_bins = frequency_mask_bins
        self.first_conv_channels = first_conv_channels
        self.time_kernel = list(time_kernel) if time_kernel is not None else [10, 2]
        self.frequency_kernel = list(frequency_kernel) if frequency_kernel is not None else [2, 8]
        self.block_channels = list(block_channels) if block_channels is not None else [32, 48, 64, 80]
        self.pool_blocks = list(pool_blocks) if pool_blocks is not None else [0, 1]
        bad_pools = [i for i in self.pool_blocks if not 0 <= i < len(self.block_channels)]
        if bad_pools:
            raise ValueError(
                f"pool_blocks={self.pool_blocks} names blocks {bad_pools} that do not exist; "
                f"use indices below len(block_channels)={len(self.block_channels)}"
            )
        self.attention_heads = attention_heads
        self.attention_hidden = attention_hidden
        self.dropout = dropout
        self.segment_seconds = segment_seconds
        self.segment_hop_seconds = segment_hop_seconds
        self.aggregate_segments = aggregate_segments
        self.class_weights = list(class_weights) if class_weights is not None else None
        if dimensional_loss not in DIMENSIONAL_LOSSES:
            raise ValueError(f"dimensional_loss={dimensional_loss!r} is not one of {DIMENSIONAL_LOSSES}")
        self.dimensional_loss = dimensional_loss
        super().__init__(**kwargs)
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} entries but the model has {self.num_labels} labels"
            )

    @property
    def num_feature_channels(self) -> int:
        """Input channels of the first convolutions: the features, plus deltas and delta-deltas when enabled."""
        return 3 if self.use_deltas else 1

    @property
    def num_coefficients(self) -> int:
        """Feature coefficients per frame (the width of the input image)."""
        return self.n_mfcc if self.feature_type == "mfcc" else self.n_mels
