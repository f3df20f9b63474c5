"""Regularizers: each a pure function plus a thin ``nn.Module`` (``configs/reg/*.yaml``).

Models receive a regularizer as a factory (``drop: Callable[[], nn.Module]``) and place one
layer after every hidden activation; ``None`` means no layer there (``nn.Identity``).
L2 is not a layer: it is the optimizer's weight decay on weights only (see :mod:`.l2`).
"""

from dropbench.regularizers.dropout import Dropout, check_drop_probability, dropout
from dropbench.regularizers.l2 import l2_parameter_groups, l2_penalty

__all__ = ["Dropout", "check_drop_probability", "dropout", "l2_parameter_groups", "l2_penalty"]
