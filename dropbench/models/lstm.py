"""LSTM that reads an image one row at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import pairwise

import torch
from torch import nn

from dropbench.models.common import DropFactories, DropFactory, make_drop, make_drop_after, per_layer

#: Makes one recurrent layer from (input_size, hidden_size).
RNNFactory = Callable[[int, int], nn.Module]


def image_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W*C): one time step per row, the row's pixels (all channels) as features.

    28 steps of 28 features on MNIST, 32 steps of 96 on CIFAR.
    """
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h, w * c)


class LSTM(nn.Module):
    """Row-sequential image classifier: input_drop -> stacked single-layer LSTMs -> last hidden
    state -> Linear.

    Layers are separate modules (``nn.LSTM`` by default, each still the fused kernel) so that
    ``drop`` can sit between them on the whole output sequence and after the last layer on the
    final hidden state. Regularizer slots: ``drop`` (one factory, or one per layer: the i-th
    after the i-th layer), ``input_drop`` (on the (N, T, F) input
    sequence), ``channel_drop`` (whole input features, over all time steps) and ``rnn``
    (builds each layer, ``(input_size, hidden_size) -> module`` returning
    ``(output, (h_n, c_n))`` like a batch-first ``nn.LSTM``).
    Input: (N, C, H, W); output: (N, num_classes) logits.
    """

    TRAITS = ("time_axis",)  # see dropbench.models.common.TRAITS

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: int = 128,
        layers: int = 1,
        drop: DropFactories | None = None,
        input_drop: DropFactory | None = None,
        channel_drop: DropFactory | None = None,
        rnn: RNNFactory | None = None,
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"model.hidden={hidden} and model.layers={layers} must both be >= 1")
        channels, _, width = in_shape
        sizes = [width * channels] + [hidden] * layers
        make_rnn = rnn or partial(nn.LSTM, batch_first=True)
        self.input_drop = make_drop(input_drop)
        self.channel_drop = make_drop(channel_drop)
        self.rnns = nn.ModuleList(make_rnn(a, b) for a, b in pairwise(sizes))
        self.drops = nn.ModuleList(
            make_drop_after(layer_drop, "the LSTM (no activation between layers)")
            for layer_drop in per_layer(drop, layers, f"model.layers={layers}")
        )
        self.classifier = nn.Linear(hidden, num_classes)

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose units are outputs, not hidden units (max-norm leaves it alone)."""
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = self.input_drop(image_rows(x))
        # (N, T, F) seen as (N, F, T): F channels over T positions, so a channel-wise
        # regularizer drops a feature for the whole sequence (views, no copies)
        sequence = self.channel_drop(sequence.transpose(1, 2)).transpose(1, 2)
        for rnn, drop in zip(self.rnns[:-1], self.drops[:-1], strict=True):
            sequence = drop(rnn(sequence)[0])
        # the last step's output (= h_n for nn.LSTM), so a regularizer's output mask reaches it
        last = self.rnns[-1](sequence)[0][:, -1]
        return self.classifier(self.drops[-1](last))
