"""L2 weight penalty (weight decay on weights only).

A. Krogh, J. Hertz, "A Simple Weight Decay Can Improve Generalization", NIPS 1991.

The penalty is lambda/2 * sum ||W||^2 over weight matrices and convolution kernels;
biases and normalisation parameters are not penalised (they do not add capacity the way
weights do). With SGD or Adam, ``weight_decay=lambda`` on a parameter group adds lambda*W
to the gradient, which is exactly the gradient of that penalty, so we express L2 as
optimizer parameter groups instead of a loss term (no extra pass over the weights).
"""

from __future__ import annotations

from torch import nn


def is_penalised(name: str, parameter: nn.Parameter) -> bool:
    """Weights (matrices, kernels, LSTM weight_ih/weight_hh) are penalised; biases are not."""
    return parameter.ndim >= 2 and not name.endswith("bias")


def l2_parameter_groups(model: nn.Module, wd: float) -> list[dict]:
    """``model``'s trainable parameters as optimizer groups: weights with weight_decay=wd, the rest 0."""
    if wd < 0:
        raise ValueError(f"wd={wd} is negative; wd is the L2 coefficient, a number >= 0")
    named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    if wd == 0:  # one group: the optimizer's per-group work (a kernel call, Python loops) runs once
        return [{"params": [q for _, q in named], "weight_decay": 0.0}]
    return [
        {"params": [q for n, q in named if is_penalised(n, q)], "weight_decay": wd},
        {"params": [q for n, q in named if not is_penalised(n, q)], "weight_decay": 0.0},
    ]


def l2_penalty(model: nn.Module, wd: float) -> float:
    """The penalty value lambda/2 * sum ||W||^2 (for logging and tests)."""
    total = sum(float(q.detach().pow(2).sum()) for n, q in model.named_parameters() if is_penalised(n, q))
    return 0.5 * wd * total
