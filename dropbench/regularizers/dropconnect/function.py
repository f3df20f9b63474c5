"""The per-example DropConnect map as an autograd Function, on two backends.

For every row i: y_i = s ((M_i * W) x_i + m_i * b). Backward: dx_i = s (M_i * W)^T g_i,
dW = sum_i s M_i * (g_i x_i^T), db = sum_i s m_i * g_i. The keep bits are packed 32 rows to
an int32 word (:mod:`.masks`); they and x, W are all that is saved for the backward pass.

- ``"fused"``: the loops of :mod:`.kernels`, compiled; the mask words are drawn by a compiled
  counter-hash loop too. Temporaries: x and the output gradient transposed lane-last.
- ``"eager"``: each example's bits expanded to all-ones/zero integers, ANDed with W's bits,
  then matrix-vector products: a few passes over a weight-sized buffer per example. Used for
  small calls, where compiling would not pay, and wherever compiling fails.
- ``"auto"``: fused from ``FUSED_MIN_ENTRIES`` mask entries (rows x out x in) up.

Both backends draw the same bits for the same torch seed, so they differ only by float
summation order. Neither ever stores a rows x out x in tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from dropbench.regularizers.dropconnect import compiled
from dropbench.regularizers.dropconnect.kernels import tiles_grad_x
from dropbench.regularizers.dropconnect.masks import (
    apply_masks,
    drop_levels,
    hashed_keep_bits,
    lane_masks,
    plane_keys,
)

BACKENDS = ("auto", "fused", "eager")
#: ``backend="auto"``: calls with at least this many weight-mask entries use the fused kernels.
FUSED_MIN_ENTRIES = 1 << 22
#: Mask entries expanded at once by the eager path (int32: 4 MiB), as whole rows.
CHUNK_ELEMENTS = 1 << 20

_most_groups: dict[tuple, int] = {}  # per layer shape: the most 32-row groups of a fused call


def uses_fused(backend: str, entries: int) -> bool:
    """Whether a call with ``entries`` mask entries runs the fused kernels."""
    if backend == "eager" or not compiled.available():
        return False
    return backend == "fused" or entries >= FUSED_MIN_ENTRIES


class PerExample(torch.autograd.Function):
    """``PerExample.apply(x, weight, bias, p, backend, chunk)``; x is (rows, in), contiguous."""

    @staticmethod
    def forward(ctx, x, weight, bias, p, backend, chunk):
        n, size = x.shape[0], weight.numel()
        groups, row = -(-n // 32), size + (0 if bias is None else weight.shape[0])
        fused = uses_fused(backend, n * size)
        if fused:
            groups = _padded_groups(groups, (*weight.shape, bias is None, x.dtype, x.device))
        keep, drawn_p = _draw(groups, row, p, x.device, fused)
        ctx.save_for_backward(x, weight, keep)
        ctx.scale, ctx.has_bias, ctx.fused, ctx.chunk = 1.0 / (1.0 - drawn_p), bias is not None, fused, chunk
        y = _fused_forward(keep, x, weight, bias) if fused else None
        if y is None:
            ctx.fused = False
            y = _eager_forward(keep, x, weight, bias, chunk)
        return y.mul_(ctx.scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, keep = ctx.saved_tensors
        grad = grad.contiguous() * ctx.scale
        wanted = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2] and ctx.has_bias)
        grads = _fused_backward(keep, x, weight, grad, wanted) if ctx.fused else None
        if grads is None:
            grads = _eager_backward(keep, x, weight, grad, wanted, ctx.chunk)
        return (*grads, None, None, None)


def _padded_groups(groups: int, layer: tuple) -> int:
    """``groups``, or the larger count of an earlier call of the same layer shape if that is at
    most twice as many: an epoch's last, partial batch then reuses the kernels compiled for the
    full batches instead of compiling a second set (about 0.5 s a kernel even from inductor's
    cache, several seconds per process). The extra rows are zero and their bits unused; the
    real rows get the same words as unpadded (the counters of the first groups do not change).
    """
    most = _most_groups.get(layer, 0)
    if groups <= most <= 2 * groups:
        return most
    _most_groups[layer] = max(most, groups)
    return groups


def _draw(groups: int, row: int, p: float, device, fused: bool) -> tuple[torch.Tensor, float]:
    """(groups, row) keep words; the compiled generator gives the eager one's words."""
    levels = drop_levels(p)
    if fused and levels:
        keys = plane_keys(device)
        words = compiled.run("keep_bits", keys, groups * row, levels)
        if words is not None:
            return words.view(groups, row), levels / (1 << 16)
        return hashed_keep_bits((groups, row), p, device, keys)
    return hashed_keep_bits((groups, row), p, device)


def _lanes_last(rows: torch.Tensor, groups: int) -> torch.Tensor:
    """(n, f) rows -> (G, f, 32): zero rows appended up to 32 G, example index innermost."""
    padded = F.pad(rows, (0, 0, 0, 32 * groups - rows.shape[0]))
    return padded.view(-1, 32, rows.shape[1]).transpose(1, 2).contiguous()


def _rows(lanes: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`_lanes_last`: (G, f, 32) -> (n, f)."""
    return lanes.transpose(1, 2).reshape(-1, lanes.shape[1])[:n]


def _split(keep: torch.Tensor, weight: torch.Tensor):
    """The weight words as (G, out, in) and the bias words as (G, out) (views of ``keep``)."""
    size = weight.numel()
    return keep[:, :size].view(-1, *weight.shape), keep[:, size:]


def _fused_forward(keep, x, weight, bias):
    words, bias_words = _split(keep, weight)
    x_lanes = _lanes_last(x, keep.shape[0])
    y = compiled.run("forward", words, None if bias is None else bias_words, x_lanes, weight, bias)
    return None if y is None else _rows(y, x.shape[0])


def _fused_backward(keep, x, weight, grad, wanted):
    """[dx, dW, db] from the fused kernels (None where not wanted), or None if one failed."""
    words, bias_words = _split(keep, weight)
    grad_lanes = _lanes_last(grad, keep.shape[0])
    kernels = [
        lambda: _fused_grad_x(words, weight, grad_lanes, x.shape[0]),
        lambda: compiled.run("grad_weight", words, _lanes_last(x, keep.shape[0]), grad_lanes),
        lambda: compiled.run("grad_bias", bias_words, grad_lanes),
    ]
    grads = [kernel() if want else None for want, kernel in zip(wanted, kernels, strict=True)]
    if any(want and g is None for want, g in zip(wanted, grads, strict=True)):
        return None
    return grads


def _fused_grad_x(words, weight, grad_lanes, n):
    if not tiles_grad_x(*weight.shape):
        dx = compiled.run("grad_x", words, weight, grad_lanes)
        return None if dx is None else _rows(dx, n)
    dx = compiled.run("grad_x_tiled", words, weight, grad_lanes)  # (G, in / 16, 32, 16)
    return None if dx is None else dx.transpose(1, 2).reshape(-1, weight.shape[1])[:n]


def _eager_forward(keep, x, weight, bias, chunk):
    n, (out_f, in_f), size = x.shape[0], weight.shape, weight.numel()
    y = x.new_empty(n, out_f)
    for start, stop, masks in expanded_masks(keep, n, chunk):
        w = apply_masks(masks[:, :size], weight.reshape(-1), out=masks[:, :size])
        b = None if bias is None else apply_masks(masks[:, size:], bias, out=masks[:, size:])
        for c, i in enumerate(range(start, stop)):
            if b is None:
                torch.mv(w[c].view(out_f, in_f), x[i], out=y[i])
            else:
                torch.addmv(b[c], w[c].view(out_f, in_f), x[i], out=y[i])
    return y


def _eager_backward(keep, x, weight, grad, wanted, chunk):
    n, (out_f, in_f), size = x.shape[0], weight.shape, weight.numel()
    need_x, need_w, need_b = wanted
    dx = torch.empty_like(x) if need_x else None
    dw = torch.zeros_like(weight) if need_w else None
    db = grad.new_zeros(out_f) if need_b else None
    spare = None  # M_i * W for dx, beside the masks (the first chunk is the largest)
    for start, stop, masks in expanded_masks(keep, n, chunk):
        weight_masks = masks[:, :size].view(-1, out_f, in_f)
        if db is not None:
            db += apply_masks(masks[:, size:], grad[start:stop]).sum(0)
        if need_x:  # M_i * W, one row at a time
            spare = torch.empty_like(weight_masks) if spare is None else spare[: stop - start]
            w = apply_masks(weight_masks, weight, out=spare)
            for c, i in enumerate(range(start, stop)):
                torch.mv(w[c].t(), grad[i], out=dx[i])
        if need_w:  # M_i * x_i (x_i repeated over the rows), then dW += g_i outer that
            xs = apply_masks(weight_masks, x[start:stop, None, :].expand(-1, out_f, -1), out=weight_masks)
            for c, i in enumerate(range(start, stop)):
                dw.addcmul_(xs[c], grad[i, :, None])
    return [dx, dw, db]


def expanded_masks(keep: torch.Tensor, n: int, chunk: int):
    """(start, stop, masks) per chunk of rows: masks[c] is row start + c's all-ones/zero masks.

    A chunk holds about ``chunk`` entries, a power of two of rows up to 32, so it never
    straddles two 32-row mask words. The masks share one buffer: use them before the next chunk.
    """
    row = keep.shape[1]
    size = 1 << (max(1, min(32, chunk // row)).bit_length() - 1)
    buffer = torch.empty(min(size, n), row, dtype=torch.int32, device=keep.device)
    lanes = torch.arange(32, dtype=torch.int32, device=keep.device)
    for start in range(0, n, size):
        stop = min(start + size, n)
        lane = start % 32
        yield (
            start,
            stop,
            lane_masks(keep[start // 32], lanes[lane : lane + stop - start], buffer[: stop - start]),
        )
