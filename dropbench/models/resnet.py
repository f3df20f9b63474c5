"""CIFAR ResNet (He et al. 2016): three stages of basic residual blocks, global pooling, a linear head.

Paper: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR
2016, Section 4.2 (the CIFAR-10 networks). https://arxiv.org/abs/1512.03385

The network is conv3x3 (16 channels) -> BatchNorm -> ReLU, then three stages of n basic blocks
at 16, 32 and 64 channels (``widths``), the first block of stages 2 and 3 halving height and
width with stride 2, then global average pooling and a linear layer: 6n + 2 weighted layers
(``depth``): ResNet-20 is n = 3 (0.27M parameters on CIFAR-10), ResNet-110 n = 18.

Shortcuts are the paper's option A, as in its CIFAR networks: the identity, and where a block
changes the shape, the input subsampled with stride 2 and zero-padded with the extra channels,
so no shortcut has parameters and the block's branch is the only thing a regularizer removes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dropbench.models.common import DropFactories, DropFactory, make_drop, make_drop_after, per_layer

#: Makes the regularizer of one residual branch from (block, blocks), 1-based from the input.
ResidualDropFactory = Callable[[int, int], nn.Module]
STAGES = 3  # He et al.'s CIFAR networks; depth 6n + 2 counts on it


def blocks_per_stage(depth: object, name: str = "model.depth") -> int:
    """n of a depth 6n + 2 (n >= 1); a ValueError naming ``name`` and the valid depths otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"{name}={depth!r} is invalid; a CIFAR ResNet has depth 6n+2, n >= 1: "
            "8, 14, 20, 26, 32, 44, 56, 110, ..."
        )
    return (depth - 2) // (2 * STAGES)


def check_widths(widths: object, name: str = "model.widths") -> list[int]:
    """The three stages' channel counts, each a whole number >= 1; a ValueError naming ``name`` otherwise."""
    fine = isinstance(widths, Sequence) and len(widths) == STAGES
    if not fine or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(
            f"{name}={widths!r} is invalid; {name} is the channels of the 3 stages, e.g. [16, 32, 64]"
        )
    return list(widths)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # no bias: the BatchNorm after it has one
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Option A: ``x`` subsampled with ``stride`` and zero-padded to ``out_channels`` channels."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


class BasicBlock(nn.Module):
    """relu(shortcut(x) + residual_drop(branch(x))), branch = conv3x3 -> BN -> ReLU ->
    channel_drop -> conv3x3 -> BN. The first conv has the block's stride; ``channel_drop`` sits
    where Wide ResNets put dropout (Zagoruyko & Komodakis 2016), ``residual_drop`` where
    stochastic depth drops the branch (Huang et al. 2016)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        channel_drop: nn.Module,
        residual_drop: nn.Module,
    ) -> None:
        super().__init__()
        self.out_channels, self.stride = out_channels, stride
        self.branch = nn.Sequential(
            conv3x3(in_channels, out_channels, stride),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            channel_drop,
            conv3x3(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
        )
        self.residual_drop = residual_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.residual_drop(self.branch(x))
        return torch.relu(shortcut(x, self.out_channels, self.stride) + branch)


class ResNet(nn.Module):
    """input_drop -> conv3x3 -> BN -> ReLU -> 3 stages of n :class:`BasicBlock` -> global
    average pool -> drop -> Linear; see the module docstring.

    ``depth`` = 6n + 2 (default 20) and ``widths`` (the stages' channels, default 16, 32, 64)
    set the size; the input's channels and the classes come from the data, and global pooling
    makes any image size >= 1 pixel work (28x28 MNIST: 28, 14, 7; 32x32 CIFAR: 32, 16, 8).
    Regularizer slots: ``input_drop`` (the input pixels), ``channel_drop`` (inside every branch),
    ``residual_drop`` (every branch, block l of the 3n told its position) and ``drop`` (the
    pooled features before the head). BatchNorm throughout: a ResNet without it is not He et al.'s.
    Input: (N, C, H, W); output: (N, num_classes) logits.
    """

    TRAITS = ("feature_maps",)  # see dropbench.models.common.TRAITS

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        widths: Sequence[int] = (16, 32, 64),
        drop: DropFactories | None = None,
        input_drop: DropFactory | None = None,
        channel_drop: DropFactory | None = None,
        residual_drop: ResidualDropFactory | None = None,
    ) -> None:
        super().__init__()
        n, widths = blocks_per_stage(depth), check_widths(widths)
        self.input_drop = make_drop(input_drop)
        self.stem = nn.Sequential(
            conv3x3(in_shape[0], widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        blocks, total, in_channels = [], STAGES * n, widths[0]
        for stage, out_channels in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                position = len(blocks) + 1
                drop_branch = residual_drop(position, total) if residual_drop else nn.Identity()
                blocks.append(
                    BasicBlock(in_channels, out_channels, stride, make_drop(channel_drop), drop_branch)
                )
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        [pooled_drop] = per_layer(drop, 1, "its pooled features")  # one hidden layer for reg.layer_p
        self.drop = make_drop_after(pooled_drop, "the ResNet (on the pooled features, before the head)")
        self.head = nn.Linear(in_channels, num_classes)
        self.reset_parameters()
        # Channels-last (NHWC): oneDNN's CPU convolutions run fastest in it (see models/cnn.py)
        self.to(memory_format=torch.channels_last)

    def reset_parameters(self) -> None:
        """He et al.'s initialisation (He et al. 2015, fan-out, for ReLU) of every conv, as
        torchvision's ResNets; BatchNorm starts as the identity (weight 1, bias 0)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def output_layer(self) -> nn.Module:
        """The layer whose units are outputs, not hidden units (max-norm leaves it alone)."""
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # a cheap per-batch copy; a no-op if NHWC
        features = self.blocks(self.stem(self.input_drop(x)))
        return self.head(self.drop(features.mean(dim=(2, 3))))
