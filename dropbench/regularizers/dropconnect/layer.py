"""The DropConnect linear map and layer: training masks (per example or per batch) and inference."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dropbench import warmup
from dropbench.regularizers.dropconnect import compiled
from dropbench.regularizers.dropconnect.function import BACKENDS, CHUNK_ELEMENTS, PerExample
from dropbench.regularizers.dropconnect.gaussian import (
    closed_form_inference,
    fast_variance_dtype,
    gaussian_inference,
    relu_gaussian_mean,
)
from dropbench.regularizers.dropconnect.masks import float_bits, lane_masks, packed_keep_bits, same_size_int
from dropbench.regularizers.dropout import check_drop_probability

MASK_MODES = ("example", "batch")
#: mean: weight scaling; gaussian: the paper's moment matching, E[relu(u)] in closed form;
#: gaussian_sampled: the paper's Algorithm 2, E[a(u)] averaged over ``samples`` draws.
INFERENCE_MODES = ("mean", "gaussian", "gaussian_sampled")


def check_mode(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not a DropConnect {name} mode; valid: {', '.join(choices)}")
    return value  # type: ignore[return-value]


#: Closed-form inference on at least this many outputs runs its element-wise part compiled
#: and its variance product in bfloat16 where that is native (:func:`.gaussian.fast_variance_dtype`).
FUSED_MIN_OUTPUTS = 1 << 16


def _relu_mean(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """:func:`.gaussian.relu_gaussian_mean`, compiled for large calls (eager if that fails)."""
    fused = None
    if mean.numel() >= FUSED_MIN_OUTPUTS and compiled.available():
        fused = compiled.run("relu_gaussian_mean", mean, var, dynamic=True)
    return relu_gaussian_mean(mean, var) if fused is None else fused


def is_relu(activation: object) -> bool:
    return activation in (torch.relu, F.relu, torch.nn.functional.relu) or isinstance(activation, nn.ReLU)


def batch_masked(
    weight: torch.Tensor, bias: torch.Tensor | None, p: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One mask for a whole call (``mask="batch"``): masked, rescaled copies s (M * W), s (m * b)
    of a layer's weights (any shape: a linear layer's or a conv kernel) and bias."""
    row = weight.numel() + (0 if bias is None else bias.numel())
    keep, drawn_p = packed_keep_bits((-(-row // 32),), p, weight.device)
    masks = lane_masks(keep, torch.arange(32, dtype=torch.int32, device=weight.device)).view(-1)[:row]
    scale_bits = float_bits(torch.tensor(1.0 / (1.0 - drawn_p), dtype=weight.dtype)).item()
    masks = masks if weight.element_size() == 4 else masks.to(same_size_int(weight.element_size()))
    scaled = masks.bitwise_and_(scale_bits).view(weight.dtype)  # s where kept, 0 where dropped
    w = weight * scaled[: weight.numel()].view_as(weight)
    return w, None if bias is None else bias * scaled[weight.numel() :]


def dropconnect_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    p: float,
    mask: str = "example",
    training: bool = True,
    backend: str = "auto",
    chunk_elements: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """DropConnect linear map, (*, in) -> (*, out) with ``weight`` (out, in), ``bias`` (out,).

    Training: each weight and bias is dropped with probability p and the survivors scaled by
    1/(1-p') (p' = p rounded to 2**-16), so E[output] = x W^T + b. ``mask="example"``: every
    row of ``x`` (leading dimensions flattened) has its own masks; ``"batch"``: one for all.
    Evaluation (``training=False``) and ``p == 0``: exactly ``F.linear(x, weight, bias)``.

    ``backend`` (per-example masks only): ``"auto"``, ``"fused"`` or ``"eager"``, see
    :mod:`.function`; ``chunk_elements``: mask entries the eager backend expands at once.
    The backend changes speed only: the masks are the same for the same torch seed.
    """
    p = check_drop_probability(p)
    check_mode("mask", mask, MASK_MODES)
    check_mode("backend", backend, BACKENDS)
    if not training or p == 0.0:
        return F.linear(x, weight, bias)
    if mask == "batch":
        return F.linear(x, *batch_masked(weight, bias, p))
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    y = PerExample.apply(rows, weight, bias, p, backend, chunk_elements)
    return y.view(*x.shape[:-1], weight.shape[0])


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` whose weights and biases are dropped during training (:func:`dropconnect_linear`).

    Paper: L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of Neural Networks
    using DropConnect", ICML 2013. Same parameters and state_dict keys (``weight``, ``bias``)
    as ``nn.Linear``; as a model's layer factory:
    ``functools.partial(DropConnectLinear, p=0.5, activation=torch.relu)``.

    - ``mask``: ``"example"`` (the paper) or ``"batch"``; see :func:`dropconnect_linear`.
    - ``inference``, in eval mode: ``"mean"`` returns ``F.linear(x, W, b)`` (exactly
      ``nn.Linear``); ``"gaussian"`` the paper's moment matching with E[relu(u)] in closed
      form (:func:`.gaussian.closed_form_inference`; activation ReLU or None);
      ``"gaussian_sampled"`` the paper's Algorithm 2 with ``samples`` draws, any activation.
    - ``activation``: applied to the layer's output in every mode, so that the Gaussian
      inference averages activation(u) as the paper does (E[a(u)] != a(E[u])). A ReLU after
      the layer in the model is then harmless (relu(relu(u)) = relu(u)). ``None``: a linear
      layer, whose Gaussian inference is E[u] = W x + b (sampled: one draw of N(mean, var / samples)).
    - ``backend``: how per-example masks are applied (speed only), see :mod:`.function`.

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
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        p = check_drop_probability(p)
        check_mode("mask", mask, MASK_MODES)
        check_mode("inference", inference, INFERENCE_MODES)
        check_mode("backend", backend, BACKENDS)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples={samples!r} is not a number of Gaussian draws; valid: an integer >= 1")
        if inference == "gaussian" and activation is not None and not is_relu(activation):
            raise ValueError(
                "inference='gaussian' has a closed form for a ReLU (or no activation), not "
                f"{getattr(activation, '__name__', activation)}; use inference='gaussian_sampled' "
                "(any activation) or model.activation=relu"
            )
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p, self.mask, self.inference, self.samples = p, mask, inference, samples
        self.activation, self.backend = activation, backend
        if mask == "example" and p > 0 and backend != "eager":
            warmup.start()  # torch.compile's one-time costs, while the data loads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.inference == "mean" or self.p == 0.0:
            y = dropconnect_linear(x, self.weight, self.bias, self.p, self.mask, self.training, self.backend)
            return y if self.activation is None else self.activation(y)
        if self.inference == "gaussian":
            relu, large = self.activation is not None, x.numel() // x.shape[-1] * self.out_features
            low = fast_variance_dtype(x) if large >= FUSED_MIN_OUTPUTS else None
            return closed_form_inference(x, self.weight, self.bias, self.p, relu, _relu_mean, low)
        return gaussian_inference(x, self.weight, self.bias, self.p, self.activation, self.samples)

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, p={self.p}, mask={self.mask}, inference={self.inference}"
        if self.inference == "gaussian_sampled":
            text += f", samples={self.samples}"
        if self.activation is not None:
            text += f", activation={getattr(self.activation, '__name__', self.activation)}"
        if self.backend != "auto":
            text += f", backend={self.backend}"
        return text
