"""Convolutional network: conv blocks, then a fully connected head."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from dropbench.models.common import (
    ACTIVATIONS,
    NORMS,
    ConvFactory,
    DropFactories,
    DropFactory,
    LinearFactory,
    check_choice,
    classifier_head,
    make_drop,
)


def conv_block(
    in_channels: int,
    out_channels: int,
    activation: str = "relu",
    norm: str = "none",
    conv: ConvFactory | None = None,
) -> nn.Sequential:
    """conv3x3 (same padding) -> [BatchNorm2d] -> activation -> 2x2 max-pool: halves height and
    width. ``conv`` builds the conv layer (DropConnect's), ``nn.Conv2d`` when None. No norm
    module at ``norm="none"`` (the state dict's keys of a model without the option)."""
    layer = (conv or nn.Conv2d)(in_channels, out_channels, 3, padding=1)
    normed = (
        [layer]
        if check_choice("model.norm", norm, NORMS) == "none"
        else [layer, nn.BatchNorm2d(out_channels)]
    )
    act = ACTIVATIONS[check_choice("model.activation", activation, tuple(ACTIVATIONS))]()
    return nn.Sequential(*normed, act, nn.MaxPool2d(2))


class CNN(nn.Module):
    """input_drop -> [conv block -> channel_drop] per entry of ``channels`` -> flatten ->
    [Linear -> [BatchNorm] -> activation -> drop] per ``fc`` -> Linear.

    ``activation`` (relu, tanh, sigmoid) and ``norm`` (none, batch: BatchNorm2d after each conv,
    BatchNorm1d after each hidden Linear, before the activation) apply to the conv blocks and the head.

    Every size follows from ``in_shape`` (C, H, W): the flattened width is
    channels[-1] * (H // 2**blocks) * (W // 2**blocks). Regularizer slots: ``drop`` (head; one
    factory, or one per entry of ``fc``), ``channel_drop`` (after each conv block), ``linear``
    (the head's hidden layers), ``conv`` (each block's conv layer) and ``input_drop`` (on the
    input pixels).
    Input: (N, C, H, W); output: (N, num_classes) logits.
    """

    TRAITS = ("feature_maps",)  # see dropbench.models.common.TRAITS

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        fc: Sequence[int] = (256,),
        drop: DropFactories | None = None,
        channel_drop: DropFactory | None = None,
        linear: LinearFactory | None = None,
        input_drop: DropFactory | None = None,
        conv: ConvFactory | None = None,
        activation: str = "relu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        in_channels, height, width = in_shape
        if not channels or min(height, width) < 2 ** len(channels):
            raise ValueError(
                f"model.channels={list(channels)}: {len(channels)} blocks halve a {height}x{width} image "
                f"below 1 pixel; use between 1 and {min(height, width).bit_length() - 1} blocks"
            )
        self.input_drop = make_drop(input_drop)
        widths = [in_channels, *channels]
        self.features = nn.Sequential(
            *(
                nn.Sequential(conv_block(a, b, activation, norm, conv), make_drop(channel_drop))
                for a, b in pairwise(widths)
            )
        )
        scale = 2 ** len(channels)
        flat = channels[-1] * (height // scale) * (width // scale)
        self.head = classifier_head(flat, fc, num_classes, drop, linear, activation, norm, "model.fc")
        # Channels-last (NHWC) is the layout oneDNN's CPU convolutions run fastest in: a CIFAR
        # epoch takes ~25% less time than in NCHW (measured, results/benchmarks.md).
        self.to(memory_format=torch.channels_last)

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose units are outputs, not hidden units (max-norm leaves it alone)."""
        return self.head[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # a cheap per-batch copy; a no-op if NHWC
        return self.head(self.features(self.input_drop(x)))
