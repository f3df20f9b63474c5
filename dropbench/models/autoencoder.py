"""Autoencoder on flattened images: the founding notes' dropout autoencoder, 784 -> 256 -> 784."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dropbench.models.common import (
    DropFactories,
    DropFactory,
    LinearFactory,
    make_drop,
    make_drop_after,
    per_layer,
)
from dropbench.tasks import Reconstruction


class Autoencoder(nn.Module):
    """input_drop -> Flatten -> Linear (encoder) -> ReLU -> drop -> Linear (decoder) -> logits.

    One hidden layer of ``hidden`` units between the C*H*W input values and as many outputs;
    the reconstruction is the sigmoid of the output (:class:`~dropbench.tasks.Reconstruction`,
    whose loss ``loss`` compares it with the input image in [0, 1]). Regularizer slots: ``drop``
    (after the hidden activation; a sequence of factories must hold one), ``input_drop`` (on
    the input pixels: a denoising autoencoder) and ``linear`` (builds the encoder and the
    decoder: DropConnect on both).
    Input: (N, C, H, W); output: (N, C, H, W) logits. ``num_classes`` is accepted like every
    model's and unused: the targets are the inputs.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: int = 256,
        loss: str = "bce",
        drop: DropFactories | None = None,
        input_drop: DropFactory | None = None,
        linear: LinearFactory | None = None,
    ) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"model.hidden={hidden} must be >= 1")
        self.task = Reconstruction(loss)
        make_linear = linear or nn.Linear
        width = math.prod(in_shape)
        self.input_drop = make_drop(input_drop)
        self.encoder = make_linear(width, hidden)
        [code_drop] = per_layer(drop, 1, "its code")
        self.drop = make_drop_after(code_drop, "the autoencoder (after its code's ReLU)")
        self.decoder = make_linear(hidden, width)
        if getattr(self.decoder, "activation", None) is not None:
            # the factory's activation (DropConnect's ReLU) is for hidden units; the decoder's
            # outputs are logits of a sigmoid, and a ReLU there would keep every pixel >= 0.5
            self.decoder.activation = None
        if getattr(self.decoder, "inference", "mean") != "mean":
            # DropConnect's Gaussian inference averages a ReLU; the decoder feeds a sigmoid
            raise ValueError("reg.inference must be mean for the autoencoder (its decoder has no ReLU)")

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose units are outputs, not hidden units (max-norm leaves it alone)."""
        return self.decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.drop(torch.relu(self.encoder(self.input_drop(x).flatten(1))))
        return self.decoder(code).view_as(x)
