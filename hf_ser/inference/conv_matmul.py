"""The wav2vec2 family's convolutional feature encoder with its strided convolutions as MatMuls, for int8 export.

onnxruntime's dynamic quantisation turns a MatMul with a constant weight into `MatMulInteger`, fast on CPUs with
8-bit dot products, and a Conv into `ConvInteger`, which is slower than the fp32 Conv on an AVX2 CPU without VNNI
(docs/benchmarks.md, section 8); so hf-ser quantises MatMuls only, and the feature encoder (a third of a
wav2vec2-base model's work on 6 s of audio) stayed fp32. A 1-D convolution of kernel k and stride s is exactly one
MatMul over the k strided, shifted views of its input, concatenated along the channels:

    out[b, t, :] = concat_j(x[b, s * t + j, :] for j < k) @ W.permute(2, 1, 0).reshape(k * C_in, C_out)

`MatMulFeatureEncoder` computes the encoder that way, in a (batch, time, channels) layout from its second layer on (so
no transposes between layers; their LayerNorms are over the channels, the last axis), with the same parameters, and
returns what the original returns, (batch, channels, frames). The first layer (one input channel: under 1 % of the
encoder's work, on the raw waveform, which 8 bits would quantise coarsely) stays the original module. The result
equals the convolutions' up to float summation order.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def strided_views_matmul(hidden: torch.Tensor, conv: nn.Conv1d, weight: torch.Tensor) -> torch.Tensor:
    """`conv` of a (batch, time, C_in) input as one MatMul: (batch, frames, C_out). `weight` is `conv.weight`
    reshaped to (k * C_in, C_out) (`matmul_weight`)."""
    (kernel,), (stride,) = conv.kernel_size, conv.stride
    frames = (hidden.shape[1] - kernel) // stride + 1
    span = stride * (frames - 1) + 1
    views = torch.cat([hidden[:, shift : shift + span : stride] for shift in range(kernel)], dim=-1)
    out = views @ weight
    return out if conv.bias is None else out + conv.bias


def matmul_weight(conv: nn.Conv1d) -> torch.Tensor:
    """`conv.weight` (C_out, C_in, k) as the (k * C_in, C_out) matrix `strided_views_matmul` multiplies by."""
    out_channels, in_channels, kernel = conv.weight.shape
    return conv.weight.detach().permute(2, 1, 0).reshape(kernel * in_channels, out_channels).contiguous()


class MatMulFeatureEncoder(nn.Module):
    """`encoder` (a wav2vec2-family feature encoder: `conv_layers`, each with `conv`, an optional `layer_norm` and an
    `activation`) computed with MatMuls from its second layer on; same input and output as `encoder`."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.first = encoder.conv_layers[0]
        self.rest = nn.ModuleList(encoder.conv_layers[1:])
        for index, layer in enumerate(self.rest):
            self.register_buffer(f"weight_{index}", matmul_weight(layer.conv), persistent=False)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden = self.first(input_values[:, None]).transpose(1, 2)
        for index, layer in enumerate(self.rest):
            hidden = strided_views_matmul(hidden, layer.conv, getattr(self, f"weight_{index}"))
            norm = getattr(layer, "layer_norm", None)  # a LayerNorm over channels: in this layout, as it is
            hidden = layer.activation(hidden if norm is None else norm(hidden))
        return hidden.transpose(1, 2)


def rewritable(encoder: object) -> bool:
    """Whether `encoder` is a feature encoder `MatMulFeatureEncoder` can compute: conv layers (an `activation` each)
    of 1-D convolutions without padding, dilation or groups, and after the first only LayerNorms (wav2vec2's
    GroupNorm sits in the first layer, which stays as it is)."""
    layers = getattr(encoder, "conv_layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) < 2:
        return False
    for index, layer in enumerate(layers):
        conv, norm = getattr(layer, "conv", None), getattr(layer, "layer_norm", None)
        if not isinstance(conv, nn.Conv1d) or conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            return False
        if index > 0 and norm is not None and not isinstance(norm, nn.LayerNorm):
            return False
        if not hasattr(layer, "activation"):
            return False
    return True


@contextmanager
def feature_encoder_as_matmuls(model: nn.Module) -> Iterator[bool]:
    """Within the block, `model.encoder.feature_extractor` (a Wav2Vec2SER's wav2vec2-family encoder) is a
    `MatMulFeatureEncoder`; yields whether it was rewritten (False for other models, left alone)."""
    encoder = getattr(model, "encoder", None)
    front = getattr(encoder, "feature_extractor", None)
    if not rewritable(front):
        yield False
        return
    encoder.feature_extractor = MatMulFeatureEncoder(front)
    try:
        yield True
    finally:
        encoder.feature_extractor = front
