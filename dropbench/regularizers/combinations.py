"""Which regularizer can regularize which model: the one table, stated once.

Pairs (model, reg) not listed are valid. Names are the config names (``configs/model/*``,
``configs/reg/*``); README.md shows the same table (a test keeps the two equal).
"""

from __future__ import annotations

from dropbench.errors import ConfigError

INVALID: dict[tuple[str, str], str] = {
    ("mlp", "spatial"): "the MLP has no feature maps to drop whole; use reg=dropout (or reg=dropconnect)",
    ("mlp", "variational"): "the MLP has no time axis to lock masks to; use reg=dropout (or reg=dropconnect)",
    ("cnn", "variational"): "the CNN has no time axis to lock masks to; use reg=spatial (or reg=dropout)",
    ("mlp", "naive"): "the MLP has no time axis for per-step masks; use reg=dropout (or reg=dropconnect)",
    ("cnn", "naive"): "the CNN has no time axis for per-step masks; use reg=conv_dropout (or reg=dropout)",
    ("mlp", "conv_dropout"): "the MLP has no feature maps; use reg=dropout (or reg=dropconnect)",
    ("lstm", "conv_dropout"): "the LSTM has no conv feature maps; for per-step input dropout use reg=naive",
}


def check_combination(model: str, reg: str) -> None:
    """Raise a one-line ConfigError if ``reg`` cannot regularize ``model``."""
    reason = INVALID.get((model, reg))
    if reason is not None:
        raise ConfigError(f"reg={reg} does not apply to model={model}: {reason}")
