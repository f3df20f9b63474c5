"""Stochastic depth (DropPath): drop a residual block's branch, so the block is the identity.

Paper: G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger, "Deep Networks with Stochastic
Depth", ECCV 2016. https://arxiv.org/abs/1603.09382

A residual block computes ``relu(shortcut(x) + f(x))``; stochastic depth multiplies the branch
``f(x)`` by a Bernoulli keep variable in training, so a dropped block passes its input on
through the shortcut alone and the network trained is, on average, shallower.

``p`` is a *drop* probability, as everywhere in dropbench. Huang et al. write survival
probabilities p_l; their CIFAR setting p_L = 0.5 (the last block survives half the time) is
``p=0.5`` here too, since 1 - 0.5 = 0.5.

Huang et al.'s linear decay rule: block l of L (l = 1 for the block nearest the
input) survives with p_l = 1 - (l / L)(1 - p_L), so it is dropped with probability
(l / L) * p, and ``p`` is the drop probability of the last block. :func:`linear_decay` is the
one place that rule lives; a model only says which block of how many it builds
(:func:`stochastic_depth`, the ``residual_drop`` factory of ``configs/reg/droppath.yaml``).

Two differences from the paper, both as in timm's ``drop_path``:

- **Per example.** Huang et al. draw one keep variable per block per mini-batch (and skip
  computing a dropped branch); here each example of the batch has its own draw, so the branch
  is always computed and a batch mixes depths. The expected network is the same.
- **Inverted scaling.** Huang et al. train unscaled and at test time multiply each branch by
  its survival probability (1 - p_l). Here a kept branch is scaled by 1 / (1 - p_l) in training
  and evaluation uses the branch as it is. The two agree in expectation (a reparametrisation of
  the branch's last layer, as for dropout's two forms); evaluation needs no rescaling.

Masks come from torch's global generator, as every dropbench regularizer's does (the run
seeds it in :func:`dropbench.build.build_model`), drawn by
:func:`dropbench.regularizers.dropout.keep_mask` (p at a resolution of 2**-16, the scale exact
for the p drawn with).
"""

from __future__ import annotations

import torch
from torch import nn

from dropbench.regularizers.dropout import check_drop_probability
from dropbench.regularizers.spatial import broadcast_dropout


def drop_path(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Per-example inverted drop of ``x`` of shape (N, *): a residual branch's output.

    Training: one Bernoulli draw per example; a dropped example is zero everywhere, a kept one
    is scaled by 1/(1-p'), so E[output] = x. Evaluation (``training=False``) and ``p == 0``:
    returns ``x`` itself.
    """
    if not training or p == 0.0:
        return x
    if x.dim() < 1:
        raise ValueError(f"drop_path needs x of shape (N, *), got a scalar of shape {tuple(x.shape)}")
    return broadcast_dropout(x, p, (x.shape[0], *[1] * (x.dim() - 1)))


def linear_decay(p: float, block: int, blocks: int) -> float:
    """Huang et al.'s linear decay rule: the drop probability (block / blocks) * p of residual
    block ``block`` (1-based, counted from the input) of ``blocks``; the last one drops with p."""
    for name, value in (("block", block), ("blocks", blocks)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}={value!r} is not a whole number")
    if not 1 <= block <= blocks:
        raise ValueError(f"block={block} is out of range; a block index runs from 1 to blocks={blocks}")
    return block / blocks * check_drop_probability(p)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; (N, *) -> same shape.

    Identity in ``eval()`` mode and at ``p == 0``. A residual block applies it to its branch
    before the addition.
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = check_drop_probability(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


def stochastic_depth(block: int, blocks: int, p: float = 0.5) -> DropPath:
    """The ``residual_drop`` factory: the :class:`DropPath` of block ``block`` of ``blocks``,
    at its :func:`linear_decay` rate of the final block's drop probability ``p``."""
    return DropPath(linear_decay(p, block, blocks))
