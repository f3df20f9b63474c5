"""What every model shares: the type of a regularizer factory and how to place one."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

#: Makes one regularizer layer (e.g. ``functools.partial(Dropout, p=0.5)``).
DropFactory = Callable[[], nn.Module]


def make_drop(drop: DropFactory | None) -> nn.Module:
    """A fresh regularizer layer, or ``nn.Identity`` when the run has none."""
    return drop() if drop is not None else nn.Identity()
