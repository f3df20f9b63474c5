"""The bound an epoch is compared with: the same GEMMs and convolutions, alone.

One forward pass of the model (reg=none) with hooks records every ``nn.Linear``, ``nn.Conv2d``
and ``nn.LSTM`` and the shape of its input. The bound is then one epoch's worth of the matrix
products and convolutions those layers need, forward and backward, on random tensors of the
same shapes and memory layouts: no autograd, no activations, pooling, biases or losses, no
regularizer, no optimizer, no data handling. The first layer computes no input gradient (the
images need none), as in training.

- Linear (x: rows x in, W: out x in): Y = X W^T, dW = dY^T X, dX = dY W.
- Conv2d: the forward convolution and ``aten.convolution_backward`` for the input and weight
  gradients: the kernels autograd itself calls.
- LSTM (T steps, 4 gates of H units), the products any implementation needs: the input
  projection of all steps as one GEMM (as the fused kernel does), one recurrent GEMM per step;
  backward, dW_ih and dW_hh as one GEMM each over all steps, dh through W_hh once per step, and
  dX as one GEMM.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Op = Callable[[], object]
TRACED = (nn.Linear, nn.Conv2d, nn.LSTM)


def traced_layers(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> list[tuple]:
    """``(layer, input shape without the batch dimension)`` of every traced layer, in call order."""
    seen: list[tuple] = []
    hooks = [
        m.register_forward_hook(lambda m, inputs, out: seen.append((m, tuple(inputs[0].shape[1:]))))
        for m in model.modules()
        if isinstance(m, TRACED)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.randn(2, *shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return seen


def mm_op(a: torch.Tensor, b: torch.Tensor) -> Op:
    """``a @ b`` into a preallocated output, as one op."""
    out = torch.empty(a.shape[0], b.shape[1], device=a.device)
    return lambda: torch.mm(a, b, out=out)


def linear_ops(layer: nn.Linear, features: tuple[int, ...], rows: int, first: bool) -> list[Op]:
    """Forward and backward products of one linear layer for a batch of ``rows``."""
    dev, n = layer.weight.device, rows * math.prod(features[:-1])  # leading dims act as rows
    x, w = torch.randn(n, layer.in_features, device=dev), torch.randn_like(layer.weight)
    grad_y = torch.randn(n, layer.out_features, device=dev)
    ops = [mm_op(x, w.t()), mm_op(grad_y.t(), x)]  # forward X W^T (W read transposed); dW = dY^T X
    return ops if first else [*ops, mm_op(grad_y, w)]  # dX = dY W


def conv_ops(layer: nn.Conv2d, features: tuple[int, ...], rows: int, first: bool) -> list[Op]:
    """The forward convolution and its input- and weight-gradient kernels."""
    x = torch.randn(rows, *features, device=layer.weight.device)
    w = torch.randn_like(layer.weight)
    args = (layer.stride, layer.padding, layer.dilation)
    grad_y = torch.randn_like(F.conv2d(x, w, None, *args, layer.groups))
    mask = [not first, True, False]  # input grad (not for the images), weight grad, no bias grad

    def backward() -> object:
        return torch.ops.aten.convolution_backward(
            grad_y, x, w, None, *args, False, [0, 0], layer.groups, mask
        )

    return [lambda: F.conv2d(x, w, None, *args, layer.groups), backward]


def lstm_ops(layer: nn.LSTM, features: tuple[int, ...], rows: int, first: bool) -> list[Op]:
    """Gate GEMMs of a single-layer, batch-first LSTM over ``T`` steps, forward and backward."""
    if layer.num_layers != 1 or layer.bidirectional or not layer.batch_first:
        raise ValueError("the bound knows single-layer, one-directional, batch-first LSTMs")
    steps, n_in = features
    dev, hidden = layer.weight_ih_l0.device, layer.hidden_size
    x = torch.randn(rows * steps, n_in, device=dev)
    w_ih, w_hh = torch.randn_like(layer.weight_ih_l0), torch.randn_like(layer.weight_hh_l0)
    h, states = torch.randn(rows, hidden, device=dev), torch.randn(rows * steps, hidden, device=dev)
    grad_gates, grad_step = (
        torch.randn(rows * steps, 4 * hidden, device=dev),
        torch.randn(rows, 4 * hidden, device=dev),
    )
    ops = [mm_op(x, w_ih.t()), *[mm_op(h, w_hh.t())] * steps]  # input projection; recurrence
    ops += [mm_op(grad_gates.t(), x), mm_op(grad_gates.t(), states)]  # dW_ih, dW_hh
    ops += [mm_op(grad_step, w_hh)] * steps  # dh(t-1) through the recurrence
    return ops if first else [*ops, mm_op(grad_gates, w_ih)]  # dX


BUILDERS = {nn.Linear: linear_ops, nn.Conv2d: conv_ops, nn.LSTM: lstm_ops}


def step_ops(layers: list[tuple], rows: int) -> list[Op]:
    """Every op of one training step on a batch of ``rows``."""
    ops: list[Op] = []
    for i, (layer, features) in enumerate(layers):
        builder = next(b for kind, b in BUILDERS.items() if isinstance(layer, kind))
        ops += builder(layer, features, rows, first=i == 0)
    return ops


class Bound:
    """One epoch's worth of a model's GEMMs and convolutions (full batches, then the last one)."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...], n: int, batch: int, device) -> None:
        layers = traced_layers(model, shape, torch.device(device))
        self.full, rest = divmod(n, batch)
        self.full_ops = step_ops(layers, batch)
        self.rest_ops = step_ops(layers, rest) if rest else []
        self.kinds = sorted({type(layer).__name__ for layer, _ in layers})

    def epoch(self, max_steps: int | None = None) -> None:
        """Run the epoch's ops; ``max_steps`` cuts it short (a warm-up)."""
        full = self.full if max_steps is None else min(self.full, max_steps)
        for _ in range(full):
            for op in self.full_ops:
                op()
        for op in self.rest_ops:
            op()
