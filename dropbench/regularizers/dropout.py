"""Dropout: drop each unit independently during training.

Paper: N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
"Dropout: A Simple Way to Prevent Neural Networks from Overfitting", JMLR 15, 2014.
https://jmlr.org/papers/v15/srivastava14a.html

``p`` is the *drop* probability (PyTorch's convention). The paper's ``p`` is the
*keep* probability, so the paper's p = 0.5 hidden / 0.8 input is ``p=0.5`` / ``p=0.2`` here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_drop_probability(p: float) -> float:
    """Return ``p`` as a float if it is a number in [0, 1); raise ValueError otherwise.

    p = 1 would drop everything (and the 1/(1-p) rescaling divides by zero).
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ValueError(f"p={p!r} is not a number; p is the drop probability, a number in [0, 1)")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p={p} is out of range; p is the drop probability, a number in [0, 1)")
    return float(p)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of any-shaped ``x``.

    Training: each element is zeroed independently with probability ``p`` and the
    survivors are scaled by 1/(1-p), so E[output] = x and evaluation needs no rescaling.
    Evaluation (``training=False``) and ``p == 0``: returns ``x`` itself.
    """
    if not training or p == 0.0:
        return x
    return F.dropout(x, p, training=True)


class Dropout(nn.Module):
    """Module form of :func:`dropout`; shape-preserving, (N, *) -> (N, *).

    Identity in ``eval()`` mode and at ``p == 0``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_drop_probability(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
