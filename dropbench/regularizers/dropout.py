"""Dropout: drop each unit independently during training.

Paper: N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov,
"Dropout: A Simple Way to Prevent Neural Networks from Overfitting", JMLR 15, 2014.
https://jmlr.org/papers/v15/srivastava14a.html

``p`` is the *drop* probability (PyTorch's convention). The paper's ``p`` is the
*keep* probability, so the paper's p = 0.5 hidden / 0.8 input is ``p=0.5`` / ``p=0.2`` here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def check_drop_probability(p: float, name: str = "p") -> float:
    """Return ``p`` as a float if it is a number in [0, 1); raise ValueError naming it ``name``
    otherwise (a layer with several probabilities names the one that is wrong).

    p = 1 would drop everything (and the 1/(1-p) rescaling divides by zero).
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ValueError(f"{name}={p!r} is not a number; {name} is the drop probability, a number in [0, 1)")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}={p} is out of range; {name} is the drop probability, a number in [0, 1)")
    return float(p)


#: Masks are drawn as 16-bit uniforms, so p is used at a resolution of 2**-16.
MASK_LEVELS = 1 << 16


def keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, float]:
    """A boolean mask, True with probability 1 - p' (kept), and the p' it was drawn with.

    p' is p rounded to a multiple of 2**-16 (|p' - p| <= 2**-17): each 64-bit random draw
    yields four independent 16-bit uniforms, so the CPU's one-number-at-a-time generator
    runs a quarter as often as for ``torch.rand`` (and 4x less than ``bernoulli_``).
    Callers scale by 1/(1 - p') so that the expectation is preserved exactly.
    """
    n = math.prod(shape)
    drop_levels = min(round(p * MASK_LEVELS), MASK_LEVELS - 1)
    bits = torch.empty(-(-n // 4), dtype=torch.int64, device=device).random_(-(2**63), None)
    uniform16 = bits.view(torch.int16)[:n].view(shape)  # each value in [-2**15, 2**15), uniform
    return uniform16 >= drop_levels - MASK_LEVELS // 2, drop_levels / MASK_LEVELS


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of any-shaped ``x``.

    Training: each element is zeroed independently with probability ``p`` and the
    survivors are scaled by 1/(1-p), so E[output] = x and evaluation needs no rescaling.
    Evaluation (``training=False``) and ``p == 0``: returns ``x`` itself.
    On the CPU the mask comes from :func:`keep_mask` (p at a resolution of 2**-16, scale
    exact for that p); on CUDA from torch's fused kernel.
    """
    if not training or p == 0.0:
        return x
    if x.is_cuda:
        return F.dropout(x, p, training=True)  # one fused kernel, Philox random numbers
    keep, drawn_p = keep_mask(x.shape, p, x.device)
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - drawn_p))


def original_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout in the paper's original form: survivors are NOT rescaled in training, and at test
    time the output is multiplied by the keep probability 1-p (the same as scaling the next
    layer's outgoing weights by 1-p, the paper's formulation). So E[training output] = (1-p) x =
    test output (up to the 2**-16 rounding of p in the mask). A network trained this way gives
    the same test outputs as one trained with :func:`dropout` would if its weights after this
    layer were 1/(1-p) larger: the two forms differ only by that reparametrisation.
    """
    if p == 0.0:
        return x
    if not training:
        return x * (1.0 - p)
    keep, _ = keep_mask(x.shape, p, x.device)
    return x * keep.to(x.dtype)


FORMS = {"inverted": dropout, "original": original_dropout}
#: Where the model puts the layer: after the hidden activation, or before it
PLACES = ("after", "before")


class Dropout(nn.Module):
    """Module form of :func:`dropout` (``form="inverted"``, the default) or of
    :func:`original_dropout` (``form="original"``); shape-preserving, (N, *) -> (N, *).

    Inverted: identity in ``eval()`` mode. Both forms: identity at ``p == 0``. ``place`` tells
    the model where to put it: ``after`` the hidden activation (the paper's) or ``before`` it
    (:func:`dropbench.models.common.hidden_unit`); a model without a hidden activation refuses ``before``.
    """

    stochastic = True  # draws random masks: MC dropout keeps it in training mode at test time

    def __init__(self, p: float = 0.5, form: str = "inverted", place: str = "after") -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form={form!r} is not a dropout form; valid: {', '.join(FORMS)}")
        if place not in PLACES:
            raise ValueError(f"place={place!r} is invalid; valid: {', '.join(PLACES)}")
        self.p = check_drop_probability(p)
        self.form, self.place = form, place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FORMS[self.form](x, self.p, self.training)

    def extra_repr(self) -> str:
        text = f"p={self.p}" if self.form == "inverted" else f"p={self.p}, form={self.form}"
        return text if self.place == "after" else f"{text}, place={self.place}"
