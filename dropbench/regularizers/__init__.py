"""Regularizers: each a pure function plus a thin ``nn.Module`` (``configs/reg/*.yaml``).

Models receive a regularizer as factories, one per place it acts (``layers:`` in the reg's
yaml; the places are listed in :mod:`dropbench.models.common`). L2 is not a layer: it is the
optimizer's weight decay on weights only (:mod:`.l2`); L1 is a loss term on the same weights
(:mod:`.l1`); max-norm is a projection after each optimizer step (:mod:`.maxnorm`). Which
regularizer fits which model: :mod:`dropbench.combinations`.
"""

from dropbench.regularizers.dropconnect import (
    DropConnectConv2d,
    DropConnectLinear,
    dropconnect_conv2d,
    dropconnect_linear,
)
from dropbench.regularizers.dropout import Dropout, check_drop_probability, dropout, original_dropout
from dropbench.regularizers.droppath import DropPath, drop_path, linear_decay, stochastic_depth
from dropbench.regularizers.l1 import l1_penalty, penalised_weights
from dropbench.regularizers.l2 import l2_parameter_groups, l2_penalty
from dropbench.regularizers.maxnorm import apply_max_norm, hidden_weights
from dropbench.regularizers.spatial import SpatialDropout, spatial_dropout
from dropbench.regularizers.variational import NaiveDropoutLSTM, VariationalLSTM
from dropbench.regularizers.weightdrop import WeightDropLSTM

__all__ = [
    "Dropout",
    "apply_max_norm",
    "check_drop_probability",
    "dropout",
    "hidden_weights",
    "l1_penalty",
    "l2_parameter_groups",
    "l2_penalty",
    "original_dropout",
    "penalised_weights",
    "SpatialDropout",
    "spatial_dropout",
    "NaiveDropoutLSTM",
    "VariationalLSTM",
    "WeightDropLSTM",
    "DropConnectConv2d",
    "DropConnectLinear",
    "dropconnect_conv2d",
    "DropPath",
    "drop_path",
    "linear_decay",
    "stochastic_depth",
    "dropconnect_linear",
]
