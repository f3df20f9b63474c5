"""DropConnect: drop individual weights and biases of a linear layer during training.

Paper: L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of Neural Networks
using DropConnect", ICML 2013. https://proceedings.mlr.press/v28/wan13.html

``p`` is the *drop* probability of each weight and bias (the paper's ``p`` keeps). For one
example x the training output is y = s ((M * W) x + m * b) with M, m independent Bernoulli keep
masks and s = 1/(1-p'): inverted scaling, as in inverted dropout, so E[y] = W x + b and the
plain layer is the mean at test time. The paper trains unscaled and multiplies by 1-p at
inference; the expectation is the same, the two differ by a reparametrisation of W and b.

Masks are per example (``mask="example"``, the paper: every row of x draws its own M, m) or
per batch (``mask="batch"``, one M, m shared by the whole call, what most libraries do).
p' is p rounded to 2**-16, as in :func:`~dropbench.regularizers.dropout.keep_mask`.

How the per-example layer stays cheap (measured in ``scripts/bench_dropconnect.py``):

- Keep bits are drawn bit-sliced: the test "16-bit uniform >= 65536 p'" is evaluated on whole
  int32 words of random bits, one bit plane at a time, so one word gives 32 independent keep
  bits from 1 (p = 1/2) to about 9 (most p) random bits per entry instead of 16. Bit c of
  word r is the keep bit of weight r for example c of a group of 32; these packed words
  (1 bit per mask entry) are all the layer keeps for the backward pass.
- Large calls run fused loops made by ``torch.compile`` (forward, dx, dW, db) that read the
  bits where they use them. Small calls (and any platform where compiling fails) take an
  eager path that expands each example's bits to all-ones/zero integers, ANDs them with W's
  bits and does matrix-vector products: a few passes over a weight-sized buffer per example.
  Neither path ever stores a batch x out x in tensor.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from dropbench.regularizers.dropout import MASK_LEVELS, check_drop_probability

MASK_MODES = ("example", "batch")
INFERENCE_MODES = ("mean", "gaussian")

#: Per-example calls with at least this many weight-mask entries (rows x out x in) use the
#: fused kernels (torch.compile); smaller ones, where compiling would not pay, the eager path.
FUSED_MIN_ENTRIES = 1 << 22
#: Mask entries expanded at once by the eager per-example path (int32: 4 MiB), as whole rows.
CHUNK_ELEMENTS = 1 << 20
#: Bit planes drawn for every mask word before only the words with tied lanes go on.
FIRST_PLANES = 8
#: Gaussian inference draws at most this many normal numbers at once (float32: 16 MiB).
SAMPLE_ELEMENTS = 1 << 22

_SAME_SIZE_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The float tensor ``t`` viewed as integers of the same width (for bitwise masking)."""
    return t.view(_SAME_SIZE_INT[t.element_size()])


def _check_mode(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not a DropConnect {name} mode; valid: {', '.join(choices)}")
    return value  # type: ignore[return-value]


def packed_keep_bits(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, float]:
    """Int32 words whose 32 bits are independent keep bits (1 with probability 1 - p'), and p'.

    Same rule and p' as ``keep_mask``: a mask entry is dropped when its 16-bit uniform u is
    below D = 65536 p'. Here u is compared with D one bit plane at a time, most significant
    first, on whole words. Planes below D's lowest set bit cannot change the outcome and are
    not drawn; after ``FIRST_PLANES`` planes, only the words with a lane still tied with D
    (about 12%) draw the remaining planes. Expected random bits per entry: 1 for p = 1/2,
    2 for 1/4 and 3/4, about 9 for other p (keep_mask: 16).
    """
    drop_levels = min(round(p * MASK_LEVELS), MASK_LEVELS - 1)
    if drop_levels == 0:
        return torch.full(shape, -1, dtype=torch.int32, device=device), 0.0
    planes = 16 - ((drop_levels & -drop_levels).bit_length() - 1)
    n = math.prod(shape)
    if planes == 1:  # p' = 1/2: the random bits are the keep bits
        words = torch.empty(-(-n // 2), dtype=torch.int64, device=device).random_(-(2**63), None)
        return words.view(torch.int32)[:n].view(shape), 0.5
    below, tied = _compare_planes(None, None, drop_levels, range(min(planes, FIRST_PLANES)), n, device)
    if planes > FIRST_PLANES:
        words = tied.nonzero().squeeze(1)
        rest, _ = _compare_planes(below[words], tied[words], drop_levels, range(FIRST_PLANES, planes))
        below[words] = rest
    return below.bitwise_not_().view(shape), drop_levels / MASK_LEVELS


def _compare_planes(below, tied, drop_levels: int, planes: range, n: int = 0, device=None):
    """Compare random bit planes ``planes`` (0 = most significant) with D's bits and return the
    updated (below, tied): ``below`` gains the lanes that fall below D, ``tied`` loses every lane
    that is decided. ``None, None``: the first plane, every lane of ``n`` words still tied."""
    n = n if below is None else below.numel()
    device = device if below is None else below.device
    scratch = None
    for j in planes:
        if scratch is None:
            scratch = torch.empty(-(-n // 2), dtype=torch.int64, device=device)
        not_bit = scratch.random_(-(2**63), None).view(torch.int32)[:n].bitwise_not_()
        one = drop_levels >> (15 - j) & 1
        if tied is None:  # the first plane decides below D (a 0 where D has a 1) or above
            below, tied = (not_bit, ~not_bit) if one else (torch.zeros_like(not_bit), not_bit)
            scratch = None  # now part of the state
        elif one:  # D has a 1: a tied lane with a 0 falls below D
            falls = not_bit.bitwise_and_(tied)
            below.bitwise_or_(falls)
            tied.bitwise_xor_(falls)
        else:  # D has a 0: a tied lane with a 1 rises above D
            tied.bitwise_and_(not_bit)
    return below, tied


def lane_masks(words: torch.Tensor, lanes: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out[c]`` is all ones (-1) where bit ``lanes[c]`` of ``words`` is set, else 0 (int32).

    Shifting the bit to the sign position and back with an arithmetic shift smears it over
    the word; ANDing the result with a float's bits keeps or zeroes that float exactly.
    """
    shifts = (31 - lanes).view(-1, *[1] * words.dim())
    out = torch.bitwise_left_shift(words, shifts, out=out)
    return out.bitwise_right_shift_(31)


def _apply(masks: torch.Tensor, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``values`` where ``masks`` is all ones, 0 where it is 0 (bitwise, so exact); ``out``
    (int32, may be ``masks`` itself) is used for 4-byte floats."""
    if values.element_size() != 4:
        masks, out = masks.to(_SAME_SIZE_INT[values.element_size()]), None
    return torch.bitwise_and(masks, _bits(values), out=out).view(values.dtype)


class _PerExample(torch.autograd.Function):
    """y_i = s ((M_i * W) x_i + m_i * b) for every row i, with masks packed 32 rows to a word.

    Backward, for every row: dx_i = s (M_i * W)^T g_i, dW += s M_i * (g_i x_i^T), db += s m_i * g_i.
    Saved: x, W and the packed keep bits (rows x (out x in + out) / 8 bytes). Temporaries: none
    on the fused path; one or two int32 buffers of CHUNK_ELEMENTS (or of one row's masks, if
    larger) on the eager path.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, p):
        n, (out_f, in_f) = x.shape[0], weight.shape
        size = out_f * in_f
        keep, drawn_p = packed_keep_bits((-(-n // 32), size + (0 if bias is None else out_f)), p, x.device)
        ctx.save_for_backward(x, weight, keep)
        ctx.scale, ctx.has_bias = 1.0 / (1.0 - drawn_p), bias is not None
        if _fused_pays(n * size):
            bias_words = None if bias is None else keep[:, size:]
            y = _fused("forward", keep[:, :size].view(-1, out_f, in_f), bias_words, _pad(x), weight, bias)
            if y is not None:
                return y[:n].mul_(ctx.scale)
        y = x.new_empty(n, out_f)
        for start, stop, masks in _expanded(keep, n):
            w = _apply(masks[:, :size], weight.reshape(-1), out=masks[:, :size])
            b = None if bias is None else _apply(masks[:, size:], bias, out=masks[:, size:])
            for c, i in enumerate(range(start, stop)):
                if b is None:
                    torch.mv(w[c].view(out_f, in_f), x[i], out=y[i])
                else:
                    torch.addmv(b[c], w[c].view(out_f, in_f), x[i], out=y[i])
        return y.mul_(ctx.scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, keep = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        n, (out_f, in_f) = x.shape[0], weight.shape
        size = out_f * in_f
        grad = grad.contiguous() * ctx.scale
        if _fused_pays(n * size):
            grads = _fused_backward(keep, x, weight, grad, ctx.has_bias, ctx.needs_input_grad)
            if grads is not None:
                return (*grads, None)
        dx = torch.empty_like(x) if need_x else None
        dw = torch.zeros_like(weight) if need_w else None
        db = grad.new_zeros(out_f) if need_b and ctx.has_bias else None
        spare = None  # M_i * W for dx, beside the masks (the first chunk is the largest)
        for start, stop, masks in _expanded(keep, n):
            weight_masks = masks[:, :size].view(-1, out_f, in_f)
            if db is not None:
                db += _apply(masks[:, size:], grad[start:stop]).sum(0)
            if need_x:  # M_i * W, one row at a time
                spare = torch.empty_like(weight_masks) if spare is None else spare[: stop - start]
                w = _apply(weight_masks, weight, out=spare)
                for c, i in enumerate(range(start, stop)):
                    torch.mv(w[c].t(), grad[i], out=dx[i])
            if need_w:  # M_i * x_i (x_i repeated over the rows), then dW += g_i outer that
                xs = _apply(weight_masks, x[start:stop, None, :].expand(-1, out_f, -1), out=weight_masks)
                for c, i in enumerate(range(start, stop)):
                    dw.addcmul_(xs[c], grad[i, :, None])
        return dx, dw, db, None


def _fused_backward(keep, x, weight, grad, has_bias, needs):
    """[dx, dW, db] from the fused kernels (None where not needed), or None if they failed."""
    n, size = x.shape[0], weight.numel()
    words, rows = keep[:, :size].view(-1, *weight.shape), _pad(grad)  # ``grad`` is already scaled
    wanted = (needs[0], needs[1], needs[2] and has_bias)
    kernels = [
        ("grad_x", words, weight, rows),
        ("grad_weight", words, _pad(x), rows),
        ("grad_bias", keep[:, size:], rows),
    ]
    grads = [_fused(*kernel) if want else None for want, kernel in zip(wanted, kernels, strict=True)]
    if any(want and g is None for want, g in zip(wanted, grads, strict=True)):
        return None
    return [None if grads[0] is None else grads[0][:n], *grads[1:]]


def _pad(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` with zero rows appended up to a multiple of 32 (one per bit of a mask word)."""
    return F.pad(rows, (0, 0, 0, -rows.shape[0] % 32))


def _keep_rows(words: torch.Tensor) -> torch.Tensor:
    """(G, *shape) mask words -> (G, 32, *shape) booleans: bit c of a word belongs to row 32 g + c."""
    lanes = torch.arange(32, dtype=torch.int32, device=words.device).view(32, *[1] * (words.dim() - 1))
    return (words.unsqueeze(1) >> lanes) & 1 != 0


def _forward_kernel(words, bias_words, x, weight, bias):
    """y[32 g + c] = (M * W) x + m * b with M, m bit c of ``words``, ``bias_words`` (x padded)."""
    y = (torch.where(_keep_rows(words), weight, 0.0) * x.view(words.shape[0], 32, 1, -1)).sum(-1)
    if bias is not None:
        y = y + torch.where(_keep_rows(bias_words), bias, 0.0)
    return y.flatten(0, 1)


def _grad_x_kernel(words, weight, grad):
    """dx[32 g + c] = (M * W)^T grad[32 g + c]."""
    masked = torch.where(_keep_rows(words), weight, 0.0)
    return (masked * grad.view(words.shape[0], 32, -1, 1)).sum(-2).flatten(0, 1)


def _grad_weight_kernel(words, x, grad):
    """dW = sum over rows of M * (grad x^T)."""
    masked = torch.where(_keep_rows(words), x.view(words.shape[0], 32, 1, -1), 0.0)
    return (masked * grad.view(words.shape[0], 32, -1, 1)).sum((0, 1))


def _grad_bias_kernel(bias_words, grad):
    """db = sum over rows of m * grad."""
    return torch.where(_keep_rows(bias_words), grad.view(bias_words.shape[0], 32, -1), 0.0).sum((0, 1))


_KERNELS = {
    "forward": _forward_kernel,
    "grad_x": _grad_x_kernel,
    "grad_weight": _grad_weight_kernel,
    "grad_bias": _grad_bias_kernel,
}
_compiled: dict[str, Callable] = {}
RECOMPILE_LIMIT = 64  # shapes per kernel before the eager path takes over (each compile: a few s)
_fused_failed: list[str] = []  # the error, once compiling has failed: the eager path from then on


def _fused_pays(entries: int) -> bool:
    return entries >= FUSED_MIN_ENTRIES and not _fused_failed


def _fused(name: str, *args: torch.Tensor | None) -> torch.Tensor | None:
    """Run kernel ``name`` compiled: the mask bits are read inside the fused loops, so nothing
    of size rows x out x in is ever stored. Compiled per shape (specialised code is about 30%
    faster than shape-generic code); should torch.compile fail, or run out of recompiles
    (it would then run the kernel eagerly, storing exactly such tensors), this returns None
    and warns once, and the eager path is used from then on."""
    import torch._dynamo  # slow to import, and only needed here

    if _fused_failed:
        return None
    if name not in _compiled:
        _compiled[name] = torch.compile(_KERNELS[name], fullgraph=True, dynamic=False)
    try:
        # One compile per (layer shape, batch rows): a serial sweep over model sizes, or a
        # benchmark building many models in one process, needs more than dynamo's default 8.
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT):
            return _compiled[name](*args)
    except Exception as error:  # no C++ compiler, an unsupported platform, too many shapes, ...
        _fused_failed.append(repr(error))
        warnings.warn(
            f"DropConnect: torch.compile failed, using the slower eager path: {error!r:.300}", stacklevel=2
        )
        return None


def _expanded(keep: torch.Tensor, n: int):
    """(start, stop, masks) per chunk of rows: masks[c] is row start + c's all-ones/zero masks.

    A chunk holds about CHUNK_ELEMENTS entries, a power of two of rows up to 32, so it never
    straddles two 32-row mask words. The masks share one buffer: use them before the next chunk.
    """
    row = keep.shape[1]
    size = 1 << (max(1, min(32, CHUNK_ELEMENTS // row)).bit_length() - 1)
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


def _per_batch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, p: float) -> torch.Tensor:
    """One mask for the call: masked, rescaled copies of W and b, then a plain linear layer."""
    row = weight.numel() + (0 if bias is None else bias.numel())
    keep, drawn_p = packed_keep_bits((-(-row // 32),), p, x.device)
    masks = lane_masks(keep, torch.arange(32, dtype=torch.int32, device=x.device)).view(-1)[:row]
    scale_bits = _bits(torch.tensor(1.0 / (1.0 - drawn_p), dtype=weight.dtype)).item()
    masks = masks if weight.element_size() == 4 else masks.to(_SAME_SIZE_INT[weight.element_size()])
    scaled = masks.bitwise_and_(scale_bits).view(weight.dtype)  # s where kept, 0 where dropped
    w = weight * scaled[: weight.numel()].view_as(weight)
    return F.linear(x, w, None if bias is None else bias * scaled[weight.numel() :])


def dropconnect_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    p: float,
    mask: str = "example",
    training: bool = True,
) -> torch.Tensor:
    """DropConnect linear map, (*, in) -> (*, out) with ``weight`` (out, in), ``bias`` (out,).

    Training: each weight and bias is dropped with probability p and the survivors scaled by
    1/(1-p') (p' = p rounded to 2**-16), so E[output] = x W^T + b. ``mask="example"``: every
    row of ``x`` (leading dimensions flattened) has its own masks; ``"batch"``: one for all.
    Evaluation (``training=False``) and ``p == 0``: exactly ``F.linear(x, weight, bias)``.
    """
    p = check_drop_probability(p)
    _check_mode("mask", mask, MASK_MODES)
    if not training or p == 0.0:
        return F.linear(x, weight, bias)
    if mask == "batch":
        return _per_batch(x, weight, bias, p)
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    return _PerExample.apply(rows, weight, bias, p).view(*x.shape[:-1], weight.shape[0])


def gaussian_moments(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of each pre-activation u_k = s (sum_j M_kj W_kj x_j + m_k b_k) under
    the training masks (keep probability q = 1 - p, s = 1/q, all masks independent):

        mean_k = sum_j W_kj x_j + b_k
        var_k  = s^2 q (1 - q) (sum_j W_kj^2 x_j^2 + b_k^2) = p / (1 - p) (sum_j W_kj^2 x_j^2 + b_k^2)

    The paper's Section 3.1 with inverted scaling (unscaled: mean q W x, var q(1-q) (W*W)(x*x)).
    """
    p = check_drop_probability(p)
    mean = F.linear(x, weight, bias)
    var = F.linear(x.square(), weight.square(), None if bias is None else bias.square())
    return mean, var.mul_(p / (1.0 - p))


def gaussian_inference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    p: float,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    samples: int = 1000,
) -> torch.Tensor:
    """The paper's inference (Algorithm 2): E[activation(u)] estimated as the mean of
    activation(u) over ``samples`` draws of u ~ N(mean, var) from :func:`gaussian_moments`.

    ``activation=None`` is the identity: the mean of ``samples`` draws of u, drawn directly
    as N(mean, var / samples) (the same distribution, one draw).
    """
    mean, var = gaussian_moments(x, weight, bias, p)
    std = var.sqrt_()
    if activation is None:
        return mean + std * torch.randn_like(mean) / math.sqrt(samples)
    total = torch.zeros_like(mean)
    per_draw = max(1, SAMPLE_ELEMENTS // max(1, mean.numel()))
    for start in range(0, samples, per_draw):
        draws = torch.randn(min(per_draw, samples - start), *mean.shape, dtype=mean.dtype, device=mean.device)
        total += activation(draws.mul_(std).add_(mean)).sum(0)
    return total / samples


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` whose weights and biases are dropped during training (:func:`dropconnect_linear`).

    Same parameters and state_dict keys (``weight``, ``bias``) as ``nn.Linear``; as a model's
    layer factory: ``functools.partial(DropConnectLinear, p=0.5, activation=torch.relu)``.

    - ``mask``: ``"example"`` (the paper) or ``"batch"``; see :func:`dropconnect_linear`.
    - ``inference``, in eval mode: ``"mean"`` returns ``F.linear(x, W, b)`` (exactly
      ``nn.Linear``); ``"gaussian"`` returns :func:`gaussian_inference` with ``samples`` draws.
    - ``activation``: applied to the layer's output in every mode, so that the Gaussian
      inference averages activation(u) as the paper does (E[a(u)] != a(E[u])). A ReLU after
      the layer in the model is then harmless (relu(relu(u)) = relu(u)). ``None``: a linear
      layer, whose Gaussian inference is one draw of N(mean, var / samples).

    Identity with ``nn.Linear`` (plus the activation) at ``p == 0`` in every mode.
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        mask: str = "example",
        inference: str = "mean",
        samples: int = 1000,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = check_drop_probability(p)
        _check_mode("mask", mask, MASK_MODES)
        _check_mode("inference", inference, INFERENCE_MODES)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples={samples!r} is not a number of Gaussian draws; valid: an integer >= 1")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p, self.mask, self.inference, self.samples = p, mask, inference, samples
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.inference == "mean" or self.p == 0.0:
            y = dropconnect_linear(x, self.weight, self.bias, self.p, self.mask, self.training)
            return y if self.activation is None else self.activation(y)
        return gaussian_inference(x, self.weight, self.bias, self.p, self.activation, self.samples)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, p={self.p}, mask={self.mask}, inference={self.inference}"
        if self.inference == "gaussian":
            text += f", samples={self.samples}"
        if self.activation is not None:
            text += f", activation={getattr(self.activation, '__name__', self.activation)}"
        return text
