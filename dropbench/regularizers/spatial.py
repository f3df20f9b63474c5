"""Spatial dropout: drop whole channels (feature maps), not single units.

Paper: J. Tompson, R. Goroshin, A. Jain, Y. LeCun, C. Bregler, "Efficient Object Localization
Using Convolutional Networks", CVPR 2015. https://arxiv.org/abs/1411.4280

Neighbouring activations of a feature map are strongly correlated, so dropping single units
hardly removes information; dropping the whole map does. ``p`` is the *drop* probability of a
channel. The LSTM model applies the same layer to its (N, T, F) input seen as (N, F, T), so a
feature channel is dropped for the whole sequence.
"""

from __future__ import annotations

import torch
from torch import nn

from dropbench.regularizers.dropout import check_drop_probability, keep_mask


def broadcast_dropout(x: torch.Tensor, p: float, mask_shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` times a keep mask of ``mask_shape`` (broadcast over its size-1 dims), scaled by 1/(1-p').

    The mask is drawn at its own small shape; the full-size mask is never materialised.
    """
    keep, drawn_p = keep_mask(mask_shape, p, x.device)
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - drawn_p))


def spatial_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Channel-wise inverted dropout of ``x`` of shape (N, C, *spatial).

    Training: one Bernoulli draw per (sample, channel); a dropped channel is zero at every
    spatial position, the others are scaled by 1/(1-p'), so E[output] = x.
    Evaluation (``training=False``) and ``p == 0``: returns ``x`` itself.
    """
    if not training or p == 0.0:
        return x
    if x.dim() < 2:
        raise ValueError(f"spatial dropout needs x of shape (N, C, *spatial), got shape {tuple(x.shape)}")
    return broadcast_dropout(x, p, (*x.shape[:2], *[1] * (x.dim() - 2)))


class SpatialDropout(nn.Module):
    """Module form of :func:`spatial_dropout`; (N, C, *spatial) -> same shape.

    Identity in ``eval()`` mode and at ``p == 0``.
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = check_drop_probability(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spatial_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
