"""DropConnect on convolution kernels: each kernel weight and bias dropped with probability p.

Paper: L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of Neural Networks
using DropConnect", ICML 2013. https://proceedings.mlr.press/v28/wan13.html

The paper drops connections of fully connected layers. In a convolution one kernel weight
serves every position, so a mask per connection (per output position and weight) would no
longer be a convolution. The variant here masks the kernel: one mask M of the whole kernel
(and m of the bias) per example (``mask="example"``: independent between the examples,
shared by all positions of one image) or per call (``mask="batch"``).

The convention is :mod:`.layer`'s: training y = conv(x, s (M * W)) + s (m * b) with
s = 1/(1-p'), p' = p rounded to 2**-16, so E[y] = conv(x, W) + b; evaluation and p = 0 give
exactly ``F.conv2d(x, W, b)``: weight scaling, what ``inference="mean"`` is for a linear
layer. The Gaussian inferences are for linear layers only: a conv layer always weight-scales.

Per-example masks come from the linear layer's per-example generator
(:func:`.masks.hashed_keep_bits`: 32 examples' keep bits to an int32 word, keys from torch's
generator, so ``torch.manual_seed`` fixes them). A chunk of examples is one grouped
convolution: its images as (1, n C_in, H, W), its masked kernels as (n C_out, C_in, kh, kw),
``groups=n``. Only x, W and the packed bits are saved for the backward pass, which re-expands
each chunk's masks: the extra memory is one chunk's masks and masked kernels (and the bits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

from dropbench.regularizers.dropconnect.function import expanded_masks
from dropbench.regularizers.dropconnect.layer import MASK_MODES, batch_masked, check_mode
from dropbench.regularizers.dropconnect.masks import apply_masks, float_bits, hashed_keep_bits
from dropbench.regularizers.dropout import check_drop_probability

#: Examples per grouped convolution: a power of two up to 32, so that a chunk is part of one
#: mask word's 32 examples. The CNN's training step took the same time at 8, 16 and 32 (within
#: the noise of the project's shared CPU, 4 slower) and the extra memory grows with the chunk:
#: 8 holds about 1 MiB of masks and kernels at once (results/dropconnect_conv.md).
CHUNK_EXAMPLES = 8
CHUNKS = (1, 2, 4, 8, 16, 32)


def dropconnect_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    p: float,
    mask: str = "example",
    training: bool = True,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    chunk: int = CHUNK_EXAMPLES,
) -> torch.Tensor:
    """DropConnect convolution, (N, C_in, H, W) or (C_in, H, W) -> (N, C_out, H', W'), with
    ``weight`` (C_out, C_in, kh, kw) and ``bias`` (C_out,); ``stride``, ``padding`` (numbers,
    not "same") and ``dilation`` as for ``F.conv2d``.

    Training: each kernel weight and bias dropped with probability p, the survivors scaled by
    1/(1-p'); ``mask="example"``: one kernel mask per example, ``"batch"``: one for the call.
    Evaluation (``training=False``) and ``p == 0``: exactly ``F.conv2d(x, weight, bias, ...)``.
    ``chunk``: examples per grouped convolution (speed and memory only, not the masks).
    """
    p = check_drop_probability(p)
    check_mode("mask", mask, MASK_MODES)
    if not training or p == 0.0:
        return F.conv2d(x, weight, bias, stride, padding, dilation)
    if mask == "batch":
        w, b = batch_masked(weight, bias, p)
        return F.conv2d(x, w, b, stride, padding, dilation)
    single = x.dim() == 3  # one image, as F.conv2d accepts it
    geometry = (list(_pair(stride)), list(_pair(padding)), list(_pair(dilation)))
    y = PerExampleConv.apply(x[None] if single else x, weight, bias, p, geometry, chunk)
    return y[0] if single else y


class PerExampleConv(torch.autograd.Function):
    """``PerExampleConv.apply(x, weight, bias, p, (stride, padding, dilation), chunk)``, x (N, C_in, H, W).

    Backward per chunk: the grouped convolution's own backward (``aten.convolution_backward``)
    with the chunk's masked kernels gives dx and every example's dW_i, db_i; then
    dW = s sum_i M_i * dW_i and db = s sum_i m_i * db_i.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, p, geometry, chunk):
        row = weight.numel() + (0 if bias is None else bias.numel())
        keep, drawn_p = hashed_keep_bits((-(-x.shape[0] // 32), row), p, x.device)
        ctx.save_for_backward(x, weight, bias, keep)
        ctx.scale, ctx.geometry, ctx.chunk = 1.0 / (1.0 - drawn_p), geometry, chunk
        kernels = _Kernels(weight, bias, ctx.scale, min(chunk, x.shape[0]))
        y = None  # filled chunk by chunk: only one chunk's output is ever a second copy
        for start, stop, masks in expanded_masks(keep, x.shape[0], chunk * row):
            w, b = kernels.weights(masks), kernels.biases(masks)
            part = F.conv2d(_stacked(x[start:stop]), w, b, *geometry, groups=stop - start)
            if y is None:
                y = part.new_empty(x.shape[0], weight.shape[0], *part.shape[2:])
            y[start:stop] = part.view(stop - start, *y.shape[1:])
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, bias, keep = ctx.saved_tensors
        want = [
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1],
            bias is not None and ctx.needs_input_grad[2],
        ]
        size, out_channels = weight.numel(), weight.shape[0]
        dx = torch.empty_like(x, memory_format=torch.contiguous_format) if want[0] else None
        dw = weight.new_zeros(size)
        db = weight.new_zeros(out_channels)
        kernels = _Kernels(weight, bias, ctx.scale, min(ctx.chunk, x.shape[0]))
        for start, stop, masks in expanded_masks(keep, x.shape[0], ctx.chunk * keep.shape[1]):
            n = stop - start
            w = kernels.weights(masks)
            bias_sizes = [n * out_channels] if want[2] else None
            gx, gw, gb = torch.ops.aten.convolution_backward(
                _stacked(grad[start:stop]),
                _stacked(x[start:stop]),
                w,
                bias_sizes,
                *ctx.geometry,
                False,
                [0, 0],
                n,
                want,
            )
            if want[0]:
                dx[start:stop] = gx.view(n, *x.shape[1:])
            if want[1]:  # the masks zero every dropped entry's gradient exactly
                dw += apply_masks(masks[:, :size], gw.view(n, size), out=masks[:, :size]).sum(0)
            if want[2]:
                db += apply_masks(masks[:, size:], gb.view(n, out_channels), out=masks[:, size:]).sum(0)
        dw = dw.mul_(ctx.scale).view_as(weight) if want[1] else None
        db = db.mul_(ctx.scale) if want[2] else None
        return dx, dw, db, None, None, None


class _Kernels:
    """A chunk's masked kernels s (M_i * W) as (n C_out, C_in, kh, kw) and biases s (m_i * b)
    as (n C_out,), from its all-ones/zero masks (n, row) (:func:`.function.expanded_masks`)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: float, most: int) -> None:
        self.shape, self.size = weight.shape, weight.numel()
        self.weight = (weight.detach() * scale).reshape(-1)  # logical order, also for channels-last W
        self.bias = None if bias is None else bias.detach() * scale
        self.buffer = weight.new_empty(most, self.size)  # reused by every chunk: use before the next

    def weights(self, masks: torch.Tensor) -> torch.Tensor:
        """The kernels, in the buffer; ``masks`` stay intact."""
        n = masks.shape[0]
        w = apply_masks(masks[:, : self.size], self.weight, out=float_bits(self.buffer[:n]))
        return w.view(n * self.shape[0], *self.shape[1:])

    def biases(self, masks: torch.Tensor) -> torch.Tensor | None:
        """The biases, written over the masks' bias entries."""
        if self.bias is None:
            return None
        return apply_masks(masks[:, self.size :], self.bias, out=masks[:, self.size :]).reshape(-1)


def _stacked(images: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) as one image of n C channels (a copy for channels-last input), for groups=n."""
    return images.reshape(1, -1, *images.shape[2:])


class DropConnectConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose kernel weights and biases are dropped during training
    (:func:`dropconnect_conv2d`; the variant of the module docstring, of Wan et al. 2013).

    Same parameters and state_dict keys as ``nn.Conv2d`` (groups 1, zero padding given as
    numbers); as a model's conv factory: ``functools.partial(DropConnectConv2d, p=0.5)``.

    - ``mask``: ``"example"`` (a kernel mask per example) or ``"batch"`` (one per call).
    - Evaluation: exactly ``nn.Conv2d`` (weight scaling; there is no Gaussian inference for conv).
    - ``chunk``: examples per grouped convolution of the per-example path (speed, memory).

    Identity with ``nn.Conv2d`` at ``p == 0`` in training and evaluation.
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        p: float = 0.5,
        mask: str = "example",
        chunk: int = CHUNK_EXAMPLES,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = check_drop_probability(p)
        check_mode("mask", mask, MASK_MODES)
        if isinstance(padding, str):
            raise ValueError(
                f"padding={padding!r}: DropConnectConv2d takes padding as numbers; valid: an int or a pair"
            )
        if chunk not in CHUNKS or isinstance(chunk, bool):
            raise ValueError(
                f"chunk={chunk!r} is not a number of examples per grouped convolution; "
                f"valid: {', '.join(map(str, CHUNKS))}"
            )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.p, self.mask, self.chunk = p, mask, chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropconnect_conv2d(
            x,
            self.weight,
            self.bias,
            self.p,
            self.mask,
            self.training,
            self.stride,
            self.padding,
            self.dilation,
            self.chunk,
        )

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, p={self.p}, mask={self.mask}"
        return text if self.chunk == CHUNK_EXAMPLES else f"{text}, chunk={self.chunk}"
