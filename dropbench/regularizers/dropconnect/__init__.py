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

Modules, one concern each:

- :mod:`.masks`: keep bits packed 32 examples to an int32 word (bit c of word r: weight r,
  example c of a group of 32), from a counter-based hash (per example) or torch's generator
  (per batch);
- :mod:`.kernels`: the fused per-example loops (``torch.compile``), examples innermost;
  :mod:`.compiled`: their compile state and the fallback when compiling fails;
- :mod:`.function`: the autograd Function and its fused / eager backends;
- :mod:`.gaussian`: the paper's moment-matching inference, closed form and sampled;
- :mod:`.layer`: :func:`dropconnect_linear` and :class:`DropConnectLinear`;
- :mod:`.conv`: the conv-kernel variant, :func:`dropconnect_conv2d` and :class:`DropConnectConv2d`.
"""

from dropbench.regularizers.dropconnect.conv import DropConnectConv2d, dropconnect_conv2d
from dropbench.regularizers.dropconnect.function import BACKENDS, FUSED_MIN_ENTRIES
from dropbench.regularizers.dropconnect.gaussian import (
    closed_form_inference,
    gaussian_inference,
    gaussian_moments,
    relu_gaussian_mean,
)
from dropbench.regularizers.dropconnect.layer import (
    INFERENCE_MODES,
    MASK_MODES,
    DropConnectLinear,
    dropconnect_linear,
)
from dropbench.regularizers.dropconnect.masks import hashed_keep_bits, lane_masks, packed_keep_bits

__all__ = [
    "BACKENDS",
    "FUSED_MIN_ENTRIES",
    "INFERENCE_MODES",
    "MASK_MODES",
    "DropConnectConv2d",
    "DropConnectLinear",
    "closed_form_inference",
    "dropconnect_conv2d",
    "dropconnect_linear",
    "gaussian_inference",
    "gaussian_moments",
    "hashed_keep_bits",
    "lane_masks",
    "packed_keep_bits",
    "relu_gaussian_mean",
]
