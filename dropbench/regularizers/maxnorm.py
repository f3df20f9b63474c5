"""Max-norm constraint on each hidden unit's incoming weight vector.

Srivastava et al. 2014 (the Dropout paper), Section 5.1: after every update, the incoming
weight vector w of each hidden unit is projected onto the ball ||w||_2 <= c. Combined with
dropout it allowed large learning rates and gave their best MNIST results (Table 9).
"""

from __future__ import annotations

import torch
from torch import nn


def hidden_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of the layers whose outputs are hidden units: every Linear and Conv2d except the
    model's ``classifier`` (the output layer; its units are not hidden)."""
    classifier = getattr(model, "classifier", None)
    return [
        m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m is not classifier
    ]


@torch.no_grad()
def apply_max_norm(weights: list[torch.Tensor], c: float) -> None:
    """Renormalise, in place, every output unit's incoming weights (dim 0 of a Linear weight or a
    conv kernel: one row, or one in_channels x kh x kw block) to L2 norm <= c; shorter ones stay."""
    for weight in weights:
        weight.renorm_(p=2, dim=0, maxnorm=c)
