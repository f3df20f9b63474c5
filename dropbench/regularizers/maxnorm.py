"""Max-norm constraint on each hidden unit's incoming weight vector.

Srivastava et al. 2014 (the Dropout paper), Section 5.1: after every update, the incoming
weight vector w of each hidden unit is projected onto the ball ||w||_2 <= c. Combined with
dropout it allowed large learning rates and gave their best MNIST results (Table 9).

A unit's incoming weights are one row of a Linear weight, one in_channels x kh x kw block of a
conv kernel, and, in an LSTM layer, one gate unit's input-to-hidden row and hidden-to-hidden
row together (the 4 * hidden rows of ``weight_ih_l0`` and ``weight_hh_l0``: both feed the same
pre-activation). Biases are not constrained, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

#: renorm_'s own guard against dividing by a norm of zero, used for the LSTM rows as well
EPS = 1e-7


def hidden_weights(model: nn.Module) -> list[tuple[torch.Tensor, ...]]:
    """The incoming weights of every hidden unit, as groups whose rows are constrained together.

    Every Linear and Conv2d except the model's ``output_layer`` (its units are
    not hidden) gives a group of one tensor; every layer of every ``nn.LSTM`` (its subclasses
    included) gives the pair (weight_ih, weight_hh). Raises ValueError for a model with hidden
    units of another kind, rather than leaving them unconstrained.
    """
    output_layer = getattr(model, "output_layer", None)
    groups: list[tuple[torch.Tensor, ...]] = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and module is not output_layer:
            groups.append((module.weight,))
        elif isinstance(module, nn.LSTM):
            groups += [
                (getattr(module, f"weight_ih_l{k}"), getattr(module, f"weight_hh_l{k}"))
                for k in range(module.num_layers)
            ]
        elif isinstance(module, (nn.RNNBase, nn.Conv1d, nn.Conv3d, nn.Bilinear)):
            raise ValueError(f"max_norm does not know the hidden units of {type(module).__name__}")
    return groups


@torch.no_grad()
def apply_max_norm(groups: list[tuple[torch.Tensor, ...]], c: float) -> None:
    """Rescale, in place, every hidden unit's incoming weights (dim 0 across a group's tensors)
    to L2 norm <= c; shorter ones stay."""
    for group in groups:
        if len(group) == 1:
            group[0].renorm_(p=2, dim=0, maxnorm=c)
            continue
        squares = sum(w.flatten(1).square().sum(dim=1) for w in group)
        norms = squares.sqrt()
        scale = torch.where(norms > c, c / (norms + EPS), torch.ones_like(norms))
        for weight in group:
            weight.mul_(scale.view(-1, *[1] * (weight.dim() - 1)))
