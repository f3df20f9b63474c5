"""L1 weight penalty: lambda * sum |W| over the weights L2 covers (not biases).

The Dropout paper (Srivastava et al. 2014), Table 9, compares "L2 + L1" with dropout. Unlike L2
(:mod:`.l2`), L1 is a term added to the loss, not an optimizer setting. Why: an optimizer's
``weight_decay`` is L2 only, and it is L2 in two senses. Adam's ``weight_decay`` is *coupled*:
it adds lambda*W to the gradient before Adam's per-parameter scaling, so it is the gradient of
a penalty (and Adam rescales it like the data's gradient); AdamW's is *decoupled*: it shrinks
the weights directly, outside the gradient, and is no longer the gradient of any penalty on
the loss. For L1 torch has neither; the honest form under every optimizer is the loss term
itself, whose gradient lambda*sign(W) flows through the optimizer (Adam's scaling included)
exactly as the data's gradient does.
"""

from __future__ import annotations

import torch
from torch import nn

from dropbench.regularizers.l2 import is_penalised


def penalised_weights(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights the penalty covers: those L2's weight decay covers (ndim >= 2)."""
    return [q for n, q in model.named_parameters() if q.requires_grad and is_penalised(n, q)]


def l1_penalty(weights: list[torch.Tensor], l1: float) -> torch.Tensor:
    """lambda * sum |W| over ``weights``: a scalar to add to the batch's loss (differentiable)."""
    return l1 * torch.stack([w.abs().sum() for w in weights]).sum()
