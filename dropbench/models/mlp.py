"""Multilayer perceptron on flattened images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dropbench.models.common import DropFactories, DropFactory, LinearFactory, classifier_head, make_drop


class MLP(nn.Module):
    """input_drop -> Flatten -> [Linear -> [BatchNorm] -> activation -> drop] per hidden layer -> Linear.

    ``activation``: relu, tanh or sigmoid; ``norm``: none, or batch (BatchNorm1d between each
    hidden Linear and its activation); see :func:`dropbench.models.common.hidden_unit`.

    ``in_shape`` is the image shape (C, H, W); the input layer has C*H*W units. Regularizer
    slots: ``drop`` (one factory, or one per hidden layer), ``input_drop`` and ``linear`` (see
    :mod:`dropbench.models.common`).
    Input: (N, C, H, W) floats; output: (N, num_classes) logits.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (800, 800),
        drop: DropFactories | None = None,
        input_drop: DropFactory | None = None,
        linear: LinearFactory | None = None,
        activation: str = "relu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"model.hidden={list(hidden)} must list at least one layer size >= 1")
        self.input_drop = make_drop(input_drop)
        self.net = classifier_head(math.prod(in_shape), hidden, num_classes, drop, linear, activation, norm)

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose units are outputs, not hidden units (max-norm leaves it alone)."""
        return self.net[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input_drop(x))
