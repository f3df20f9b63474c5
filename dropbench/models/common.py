"""What every model shares: the regularizer slots and how to fill them.

A regularizer reaches a model as factories, one per place it acts (``configs/reg/*.yaml``,
``layers:``), and a model accepts only the places it has:

- ``drop``: after every hidden activation (dropout);
- ``input_drop``: on the input units (the Dropout paper's input dropout);
- ``channel_drop``: on channels, given as (N, C, *positions): after every conv block (CNN),
  and on the input sequence's feature channels over all time steps (LSTM); spatial dropout
  drops whole channels there, reg=conv_dropout single elements (its control, CNN only);
- ``linear``: builds the hidden fully connected layers (DropConnect), ``(in, out) -> module``;
- ``rnn``: builds each LSTM layer (variational, naive per-step dropout, weight drop),
  ``(in, hidden) -> module``.

An empty slot means the plain layer (``nn.Identity``, ``nn.Linear``, ``nn.LSTM``). Every model
also names its ``output_layer`` (whose units are outputs, not hidden units: max-norm leaves it
alone) and, if it is not a classifier, its ``task`` (:mod:`dropbench.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

#: The places a model can offer a regularizer, with what each is (a model offers a place by
#: accepting a constructor argument of that name; :mod:`dropbench.combinations` reads them).
SLOTS = {
    "drop": "hidden activations",
    "input_drop": "input units",
    "channel_drop": "feature channels",
    "linear": "hidden fully connected layers",
    "rnn": "recurrent layers (a time axis)",
}
#: The places whose factory takes two sizes, (in, out) or (in, hidden); the others' take none.
SIZED_SLOTS = ("linear", "rnn")
#: What a model may declare about itself (``TRAITS`` on the class) beyond its places.
TRAITS = {
    "feature_maps": "conv feature maps",
    "time_axis": "a time axis",
}

#: Makes one regularizer layer (e.g. ``functools.partial(Dropout, p=0.5)``).
DropFactory = Callable[[], nn.Module]
#: Makes a fully connected layer from (in_features, out_features).
LinearFactory = Callable[[int, int], nn.Module]


def make_drop(drop: DropFactory | None) -> nn.Module:
    """A fresh regularizer layer, or ``nn.Identity`` when the run has none."""
    return drop() if drop is not None else nn.Identity()


def classifier_head(
    width: int,
    hidden: Sequence[int],
    num_classes: int,
    drop: DropFactory | None = None,
    linear: LinearFactory | None = None,
) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU -> drop] per entry of ``hidden`` -> Linear to ``num_classes``.

    The regularizer follows each hidden activation, where the Dropout paper puts it; ``linear``
    (DropConnect) builds the hidden layers, while the output layer stays a plain ``nn.Linear``.
    """
    make_linear = linear or nn.Linear
    layers: list[nn.Module] = [nn.Flatten()]
    for units in hidden:
        layers += [make_linear(width, units), nn.ReLU(), make_drop(drop)]
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
