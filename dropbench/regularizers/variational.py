"""Variational (time-locked) dropout for an LSTM, and the naive per-step dropout it improves on.

Paper: Y. Gal, Z. Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent
Neural Networks", NeurIPS 2016. https://arxiv.org/abs/1512.05287
Naive baseline: W. Zaremba, I. Sutskever, O. Vinyals, "Recurrent Neural Network
Regularization", 2014. https://arxiv.org/abs/1409.2329

Gal & Ghahramani draw ONE mask per sequence for each of the input x_t, the recurrent state
h_(t-1) and the output h_t, and reuse it at every time step (dropout as approximate Bayesian
inference over the weights). Zaremba et al. drop inputs and outputs with a fresh mask at every
step and never touch the recurrence. ``p_*`` are *drop* probabilities in [0, 1).

Speed: a time-constant input mask lets the input projection of all steps be one GEMM; only
h_(t-1) @ W_hh^T loops over time. The loop and its hand-written backward run in one autograd
node (:class:`_Recurrence`), so a step costs one GEMM and a few element-wise kernels each way,
with no per-step autograd bookkeeping.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from dropbench.regularizers.dropout import check_drop_probability, dropout, keep_mask


class LSTMMasks(NamedTuple):
    """Scaled keep masks (0 or 1/(1-p')), one row per sequence; None where p = 0.

    input: (N, input_size); hidden and output: (N, hidden_size).
    """

    input: torch.Tensor | None
    hidden: torch.Tensor | None
    output: torch.Tensor | None


def sequence_mask(
    batch: int, size: int, p: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor | None:
    """(batch, size) scaled keep mask, 0 or 1/(1-p'); None at p = 0 (nothing to drop)."""
    if p == 0.0:
        return None
    keep, drawn_p = keep_mask((batch, size), p, device)
    return keep.to(dtype).mul_(1.0 / (1.0 - drawn_p))


def variational_masks(
    batch: int,
    input_size: int,
    hidden_size: int,
    p_input: float,
    p_hidden: float,
    p_output: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LSTMMasks:
    """The three per-sequence masks of one forward pass, each to be reused at every time step."""
    return LSTMMasks(
        sequence_mask(batch, input_size, p_input, device, dtype),
        sequence_mask(batch, hidden_size, p_hidden, device, dtype),
        sequence_mask(batch, hidden_size, p_output, device, dtype),
    )


class _Recurrence(torch.autograd.Function):
    """The LSTM recurrence over precomputed input gates, with a fixed mask on h_(t-1).

    Inputs (time-major): gates_x (T, N, 4H) = x_t @ W_ih^T + b for every t; h0, c0 (N, H);
    w_hh (4H, H); mask_h (N, H) or None. Outputs: h_t for every t (T, N, H), h_T, c_T.
    Gate order i, f, g, o as in ``nn.LSTM``.
    """

    @staticmethod
    def forward(ctx, gates_x, h0, c0, w_hh, mask_h):
        steps, batch, four_h = gates_x.shape
        hidden = four_h // 4
        acts = torch.empty_like(gates_x)  # activated gates i, f, g, o
        h_in = gates_x.new_empty(steps, batch, hidden)  # masked h_(t-1), the GEMM's left operand
        cells = gates_x.new_empty(steps + 1, batch, hidden)
        tanh_c = gates_x.new_empty(steps, batch, hidden)
        out = gates_x.new_empty(steps, batch, hidden)
        cells[0] = c0
        h, w_t = h0, w_hh.t()
        for t in range(steps):
            if mask_h is None:
                h_in[t] = h
            else:
                torch.mul(h, mask_h, out=h_in[t])
            i, f, g, o = torch.addmm(gates_x[t], h_in[t], w_t, out=acts[t]).chunk(4, 1)
            acts[t, :, : 2 * hidden].sigmoid_()
            g.tanh_()
            o.sigmoid_()
            torch.addcmul(f * cells[t], i, g, out=cells[t + 1])
            torch.tanh(cells[t + 1], out=tanh_c[t])
            h = torch.mul(o, tanh_c[t], out=out[t])
        ctx.save_for_backward(acts, h_in, cells, tanh_c, w_hh, mask_h)
        return out, h.clone(), cells[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h, grad_c):
        acts, h_in, cells, tanh_c, w_hh, mask_h = ctx.saved_tensors
        i, f, g, o = acts.chunk(4, 2)
        # local derivatives of all steps at once (few large kernels, not many small ones)
        d_cell = o * (1 - tanh_c * tanh_c)  # dh_t -> dc_t
        local = torch.cat([g * i * (1 - i), cells[:-1] * f * (1 - f), i * (1 - g * g)], 2)
        d_o = o * (1 - o) * tanh_c
        grad_gates = torch.empty_like(acts)
        steps, batch, four_h = acts.shape
        hidden = four_h // 4
        dh = grad_h.clone() if grad_h is not None else acts.new_zeros(batch, hidden)
        dc = grad_c.clone() if grad_c is not None else acts.new_zeros(batch, hidden)
        for t in reversed(range(steps)):
            if grad_out is not None:
                dh += grad_out[t]
            dc.addcmul_(dh, d_cell[t])
            dg = grad_gates[t]
            torch.mul(
                local[t].view(batch, 3, hidden),
                dc.unsqueeze(1),
                out=dg[:, : 3 * hidden].view(batch, 3, hidden),
            )
            torch.mul(d_o[t], dh, out=dg[:, 3 * hidden :])
            dc = dc.mul_(f[t])
            dh = torch.mm(dg, w_hh)
            if mask_h is not None:
                dh.mul_(mask_h)
        grad_w = None
        if ctx.needs_input_grad[3]:
            grad_w = grad_gates.view(-1, four_h).t().mm(h_in.view(-1, hidden))
        return grad_gates, dh, dc, grad_w, None


def variational_lstm(
    x: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor,
    bias_hh: torch.Tensor,
    masks: LSTMMasks,
    hx: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One LSTM layer over batch-first ``x`` (N, T, F) with per-sequence masks reused at every step.

    x_t -> x_t * masks.input; h_(t-1) -> h_(t-1) * masks.hidden inside the recurrence; the
    emitted sequence -> h_t * masks.output. Returns ``(output (N, T, H), (h_n, c_n))`` with
    h_n, c_n of shape (1, N, H) like ``nn.LSTM``; h_n and c_n are the unmasked final state.
    """
    batch, steps, _ = x.shape
    if masks.input is not None:
        x = x * masks.input.unsqueeze(1)
    # the input projection of every step in one GEMM, time-major so each step reads a block
    x_steps = x.transpose(0, 1).reshape(steps * batch, -1)
    gates_x = torch.addmm(bias_ih + bias_hh, x_steps, weight_ih.t()).view(steps, batch, -1)
    if hx is None:
        h0 = c0 = x.new_zeros(batch, weight_hh.shape[1])
    else:
        h0, c0 = hx[0][0], hx[1][0]
    out, h_n, c_n = _Recurrence.apply(gates_x, h0, c0, weight_hh, masks.hidden)
    if masks.output is not None:
        out = out * masks.output
    return out.transpose(0, 1), (h_n.unsqueeze(0), c_n.unsqueeze(0))


class VariationalLSTM(nn.LSTM):
    """Single-layer batch-first ``nn.LSTM`` with variational dropout; (N, T, F) -> (N, T, H).

    A drop-in for ``nn.LSTM(input_size, hidden_size, batch_first=True)``: same parameters
    (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``), same state dict, same
    ``(output, (h_n, c_n))``. Training: fresh masks each forward, one per sequence, on the input
    (``p_input``), on h_(t-1) entering the recurrence (``p_hidden``) and on the output sequence
    (``p_output``); the drawn masks are kept in ``last_masks``. Evaluation, or all p = 0: the
    fused ``nn.LSTM`` kernel, unchanged.
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        p_input: float = 0.0,
        p_hidden: float = 0.0,
        p_output: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)
        self.p_input = check_drop_probability(p_input)
        self.p_hidden = check_drop_probability(p_hidden)
        self.p_output = check_drop_probability(p_output)
        self.last_masks: LSTMMasks | None = None

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if not self.training or self.p_input == self.p_hidden == self.p_output == 0.0:
            return super().forward(x, hx)
        if x.dim() != 3:
            raise ValueError(f"VariationalLSTM needs batch-first x of shape (N, T, F), got {tuple(x.shape)}")
        ps = (self.p_input, self.p_hidden, self.p_output)
        self.last_masks = variational_masks(
            x.shape[0], self.input_size, self.hidden_size, *ps, x.device, x.dtype
        )
        weights = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        return variational_lstm(x, *weights, self.last_masks, hx)

    def extra_repr(self) -> str:
        ps = f"p_input={self.p_input}, p_hidden={self.p_hidden}, p_output={self.p_output}"
        return f"{super().extra_repr()}, {ps}"


class NaiveDropoutLSTM(nn.LSTM):
    """Single-layer batch-first ``nn.LSTM`` with per-step dropout on inputs and outputs (Zaremba et al.).

    Training: every element of the input and output sequences is dropped independently, so a
    feature dropped at step t is usually kept at step t+1; the recurrence is never masked.
    The LSTM itself stays the fused kernel. Evaluation, or p = 0: plain ``nn.LSTM``.
    """

    stochastic = True

    def __init__(
        self, input_size: int, hidden_size: int, p_input: float = 0.0, p_output: float = 0.0
    ) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)
        self.p_input = check_drop_probability(p_input)
        self.p_output = check_drop_probability(p_output)

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = super().forward(dropout(x, self.p_input, self.training), hx)
        return dropout(out, self.p_output, self.training), state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p_input={self.p_input}, p_output={self.p_output}"
