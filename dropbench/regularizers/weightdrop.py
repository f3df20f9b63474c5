"""Weight drop: DropConnect on an LSTM's hidden-to-hidden weights.

S. Merity, N. S. Keskar, R. Socher, "Regularizing and Optimizing LSTM Language Models"
(AWD-LSTM), ICLR 2018, https://arxiv.org/abs/1708.02182 — DropConnect (Wan et al. 2013)
applied to W_hh. One mask per forward pass (per mini-batch), fixed over all time steps, so
the fused LSTM kernel runs unchanged on the masked weight matrix: a per-example mask on the
recurrent weights would need one matrix per sequence and no fused kernel could use it.
"""

from __future__ import annotations

import torch
from torch import nn

from dropbench.regularizers.dropout import check_drop_probability, keep_mask


def drop_weights(weight: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``weight`` with each entry dropped with probability p and survivors scaled by 1/(1-p'),
    so E[result] = weight; the mask is one draw for the whole tensor. Identity in evaluation
    and at p == 0."""
    if not training or p == 0.0:
        return weight
    keep, drawn_p = keep_mask(weight.shape, p, weight.device)
    return weight * keep.to(weight.dtype).mul_(1.0 / (1.0 - drawn_p))


class WeightDropLSTM(nn.LSTM):
    """A single-layer, batch-first ``nn.LSTM`` whose ``weight_hh_l0`` is DropConnect-ed in training.

    Same parameters and outputs as ``nn.LSTM(input_size, hidden_size, batch_first=True)``:
    (N, T, input_size) -> ((N, T, hidden_size), (h_n, c_n)). Evaluation: the plain LSTM
    (the expectation of the masked weights is the weights).
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(self, input_size: int, hidden_size: int, p: float = 0.5) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)
        self.p = check_drop_probability(p)

    def forward(self, x: torch.Tensor, hx=None):
        if not self.training or self.p == 0.0:
            return super().forward(x, hx)
        weights = [
            self.weight_ih_l0,
            drop_weights(self.weight_hh_l0, self.p),
            self.bias_ih_l0,
            self.bias_hh_l0,
        ]
        if hx is None:
            zeros = x.new_zeros(1, x.shape[0], self.hidden_size)
            hx = (zeros, zeros)
        output, h_n, c_n = torch.lstm(x, hx, weights, True, 1, 0.0, True, False, True)
        return output, (h_n, c_n)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"
