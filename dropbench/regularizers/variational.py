"""Variational (time-locked) dropout for an LSTM, and the naive per-step dropout it improves on.

Paper: Y. Gal, Z. Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent
Neural Networks", NeurIPS 2016. https://arxiv.org/abs/1512.05287
Naive baseline: W. Zaremba, I. Sutskever, O. Vinyals, "Recurrent Neural Network
Regularization", 2014. https://arxiv.org/abs/1409.2329

Gal & Ghahramani draw ONE mask per sequence for each of the input x_t, the recurrent state
h_(t-1) and the output h_t, and reuse it at every time step (dropout as approximate Bayesian
inference over the weights). Zaremba et al. drop inputs and outputs with a fresh mask at every
step and never touch the recurrence. ``p_*`` are *drop* probabilities in [0, 1).

Speed (training; evaluation is the fused ``nn.LSTM`` kernel): a time-constant input mask lets
the input projection of all steps be one GEMM; only h_(t-1) @ W_hh^T loops over time. The loop
and its hand-written backward are one autograd node (:class:`_VariationalLayer`): per step one GEMM
and a few element-wise kernels each way, no per-step autograd bookkeeping, and the gradient of
W_hh is one GEMM over all steps. tanh is computed as 2 * sigmoid(2x) - 1 (one sigmoid covers
all four gates; CPU tanh is ~5x slower than sigmoid). See ``scripts/bench_variational.py``.
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


def _gate_scale(w: torch.Tensor) -> torch.Tensor:
    """``w`` (4H, K) with the rows of the cell candidate g doubled (a new tensor).

    With g's pre-activation doubled, ONE sigmoid over all four gates gives i, f, o and
    tanh(g) = 2 * sigmoid(2g) - 1; on the CPU tanh is ~5x slower than sigmoid.
    """
    hidden = w.shape[0] // 4
    w = w.clone()
    w[2 * hidden : 3 * hidden] *= 2.0
    return w


def _forward_steps(
    acts: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_hh: torch.Tensor, mask_h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the recurrence over ``acts`` (T, N, 4H), the input part of the gate pre-activations,
    which become the activated gates in place; return out, h_in, cells, tanh_c."""
    steps, batch, four_h = acts.shape
    hidden = four_h // 4
    h_in = acts.new_empty(steps, batch, hidden)  # masked h_(t-1): the recurrent GEMM's operand
    cells = acts.new_empty(steps + 1, batch, hidden)
    tanh_c = acts.new_empty(steps, batch, hidden)
    out = acts.new_empty(steps, batch, hidden)
    cells[0] = c0
    h, w_t = h0, w_hh.t()
    for t in range(steps):
        if mask_h is None:
            h_in[t].copy_(h)
        else:
            torch.mul(h, mask_h, out=h_in[t])
        i, f, g, o = acts[t].addmm_(h_in[t], w_t).sigmoid_().chunk(4, 1)
        g.mul_(2.0).sub_(1.0)  # tanh of the unscaled g pre-activation
        torch.mul(f, cells[t], out=cells[t + 1]).addcmul_(i, g)
        torch.mul(cells[t + 1], 2.0, out=tanh_c[t]).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(c_t)
        h = torch.mul(o, tanh_c[t], out=out[t])
    return out, h_in, cells, tanh_c


def _local_derivatives(acts: torch.Tensor, cells: torch.Tensor, tanh_c: torch.Tensor):
    """For all steps at once: d(gate pre-activation) per unit of dc_t (i, f, g) or of dh_t (o),
    and dh_t -> dc_t (= o * tanh'(c_t))."""
    hidden = acts.shape[2] // 4
    i, f, g, o = acts.chunk(4, 2)
    local = torch.addcmul(acts, acts, acts, value=-1.0)  # sigmoid' = s - s^2
    local[..., :hidden] *= g
    local[..., hidden : 2 * hidden] *= cells[:-1]
    torch.addcmul(i, i * g, g, value=-1.0, out=local[..., 2 * hidden : 3 * hidden])  # i * tanh'(g)
    local[..., 3 * hidden :] *= tanh_c
    return local, torch.addcmul(o, o * tanh_c, tanh_c, value=-1.0)


def _backward_steps(
    grad_out: torch.Tensor | None,
    dh: torch.Tensor,
    dc: torch.Tensor,
    local: torch.Tensor,
    dh_to_dc: torch.Tensor,
    forget: torch.Tensor,
    w_hh: torch.Tensor,
    mask_h: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backpropagate through time; return the gradients of the gate pre-activations, h0 and c0."""
    steps, batch, four_h = local.shape
    hidden = four_h // 4
    grad_gates = torch.empty_like(local)
    for t in range(steps - 1, -1, -1):
        if grad_out is not None:  # None when only the final state is used, as in a classifier
            dh += grad_out[t]
        dc.addcmul_(dh, dh_to_dc[t])
        dg = grad_gates[t].view(batch, 4, hidden)
        torch.mul(local[t].view(batch, 4, hidden)[:, :3], dc.unsqueeze(1), out=dg[:, :3])
        torch.mul(local[t, :, 3 * hidden :], dh, out=dg[:, 3])
        dc.mul_(forget[t])
        dh = torch.mm(grad_gates[t], w_hh)
        if mask_h is not None:
            dh.mul_(mask_h)
    return grad_gates, dh, dc


class _VariationalLayer(torch.autograd.Function):
    """One LSTM layer with fixed masks on x_t and on h_(t-1), forward and hand-written backward.

    Inputs: x (N, T, F); w_ih (4H, F); w_hh (4H, H); bias (4H,) = b_ih + b_hh; h0, c0 (N, H);
    mask_x (N, F) and mask_h (N, H), each or None. Outputs: h_t for every t, time-major
    (T, N, H), and h_T, c_T. Gate order i, f, g, o as in ``nn.LSTM``. The input projection of
    all steps is one GEMM, with the bias as a column of ones appended to the inputs (so its
    gradient falls out of the weight-gradient GEMM); per step the forward does one GEMM and
    eleven small element-wise kernels, the backward one GEMM and six; the weight gradients are one
    GEMM each over all steps.
    """

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, bias, h0, c0, mask_x, mask_h):
        batch, steps, features = x.shape
        inputs = x.new_ones(steps, batch, features + 1)  # time-major x_t * mask_x, then a 1 for the bias
        torch.mul(x.transpose(0, 1), 1.0 if mask_x is None else mask_x, out=inputs[..., :features])
        w_in = _gate_scale(torch.cat([w_ih, bias.unsqueeze(1)], 1))
        acts = inputs.view(steps * batch, -1).mm(w_in.t()).view(steps, batch, -1)
        out, h_in, cells, tanh_c = _forward_steps(acts, h0, c0, _gate_scale(w_hh), mask_h)
        ctx.save_for_backward(inputs, w_ih, w_hh, acts, h_in, cells, tanh_c, mask_x, mask_h)
        ctx.set_materialize_grads(False)  # unused outputs get None, not tensors of zeros
        return out, out[-1].clone(), cells[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h, grad_c):
        inputs, w_ih, w_hh, acts, h_in, cells, tanh_c, mask_x, mask_h = ctx.saved_tensors
        local, dh_to_dc = _local_derivatives(acts, cells, tanh_c)
        forget = acts.chunk(4, 2)[1]
        dh = h_in.new_zeros(h_in.shape[1:]) if grad_h is None else grad_h.clone()
        dc = h_in.new_zeros(h_in.shape[1:]) if grad_c is None else grad_c.clone()
        grad_gates, dh0, dc0 = _backward_steps(grad_out, dh, dc, local, dh_to_dc, forget, w_hh, mask_h)
        grad_gates = grad_gates.view(-1, grad_gates.shape[2])
        grad_w_in = inputs.view(grad_gates.shape[0], -1).t().mm(grad_gates).t()  # (4H, F + 1)
        grad_w_hh = grad_gates.t().mm(h_in.view(grad_gates.shape[0], -1))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_gates.mm(w_ih).view(*acts.shape[:2], -1).transpose(0, 1)
            grad_x = grad_x if mask_x is None else grad_x * mask_x.unsqueeze(1)
        return grad_x, grad_w_in[:, :-1], grad_w_hh, grad_w_in[:, -1], dh0, dc0, None, None


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
    batch, hidden = x.shape[0], weight_hh.shape[1]
    h0, c0 = (x.new_zeros(batch, hidden),) * 2 if hx is None else (hx[0][0], hx[1][0])
    weights = (weight_ih, weight_hh, bias_ih + bias_hh)
    out, h_n, c_n = _VariationalLayer.apply(x, *weights, h0, c0, masks.input, masks.hidden)
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
        self.p_input = check_drop_probability(p_input, "p_input")
        self.p_hidden = check_drop_probability(p_hidden, "p_hidden")
        self.p_output = check_drop_probability(p_output, "p_output")
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
        self.p_input = check_drop_probability(p_input, "p_input")
        self.p_output = check_drop_probability(p_output, "p_output")

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = super().forward(dropout(x, self.p_input, self.training), hx)
        return dropout(out, self.p_output, self.training), state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p_input={self.p_input}, p_output={self.p_output}"
