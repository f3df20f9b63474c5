"""What every model shares: the type of a regularizer factory and how to place one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

#: Makes one regularizer layer (e.g. ``functools.partial(Dropout, p=0.5)``).
DropFactory = Callable[[], nn.Module]


def make_drop(drop: DropFactory | None) -> nn.Module:
    """A fresh regularizer layer, or ``nn.Identity`` when the run has none."""
    return drop() if drop is not None else nn.Identity()


def classifier_head(
    width: int, hidden: Sequence[int], num_classes: int, drop: DropFactory | None
) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU -> drop] per entry of ``hidden`` -> Linear to ``num_classes``.

    The regularizer follows each hidden activation, where the Dropout paper puts it.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU(), make_drop(drop)]
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
