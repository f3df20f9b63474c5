"""What every model shares: the regularizer slots and how to fill them.

A regularizer reaches a model as factories, one per place it acts (``configs/reg/*.yaml``,
``layers:``), and a model accepts only the places it has:

- ``drop``: after every hidden activation (dropout);
- ``input_drop``: on the input units (the Dropout paper's input dropout);
- ``channel_drop``: on channels, given as (N, C, *positions): after every conv block (CNN),
  inside every residual branch between its two convs (ResNet), and on the input sequence's
  feature channels over all time steps (LSTM); spatial dropout drops whole channels there,
  reg=conv_dropout single elements (its control; not the LSTM's);
- ``linear``: builds the hidden fully connected layers (DropConnect), ``(in, out) -> module``;
- ``conv``: builds the conv layers (DropConnect on conv kernels),
  ``(in_channels, out_channels, kernel_size, padding=) -> module``, as ``nn.Conv2d`` is called;
- ``rnn``: builds each LSTM layer (variational, naive per-step dropout, weight drop),
  ``(in, hidden) -> module``;
- ``residual_drop``: on each residual block's branch before the addition (stochastic depth),
  ``(block, blocks) -> module`` for block ``block`` (1-based, from the input) of ``blocks``:
  the reg decides each block's rate from its position.

An empty slot means the plain layer (``nn.Identity``, ``nn.Linear``, ``nn.Conv2d``,
``nn.LSTM``). The ``drop`` slot also takes a sequence of factories, one per hidden layer in
order (``reg.layer_p``: a rate for each; :func:`per_layer`). A ``drop`` layer may say where it
goes (``place``: ``after`` the activation, the default, or ``before`` it), and a ``linear``
layer that applies the activation itself (DropConnect's ``activation``, which its Gaussian
inference averages) is not followed by
another one.

The MLP's and the CNN's hidden layers share their make-up (``model.activation``, ``model.norm``):
Linear/Conv -> [BatchNorm] -> activation -> drop (or drop before the activation). Every model
also names its ``output_layer`` (whose units are outputs, not hidden units: max-norm leaves it
alone) and, if it is not a classifier, its ``task`` (:mod:`dropbench.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

#: The places a model can offer a regularizer, with what each is (a model offers a place by
#: accepting a constructor argument of that name; :mod:`dropbench.combinations` reads them).
SLOTS = {
    "drop": "hidden activations",
    "input_drop": "input units",
    "channel_drop": "feature channels",
    "linear": "hidden fully connected layers",
    "conv": "conv layers",
    "rnn": "recurrent layers (a time axis)",
    "residual_drop": "residual branches",
}
#: The places whose factory takes numbers first, with tiny example values (``placement.check_reg_layers``
#: builds one layer to check a reg's settings): sizes (in, out), (in, hidden) or (in, out,
#: kernel_size) for ``linear``, ``rnn`` and ``conv``, a block's position (block, blocks) for
#: ``residual_drop`` (2 of 2: the last block, whose rate is p); the others' factories take none.
SIZED_SLOTS: dict[str, tuple[int, ...]] = {
    "linear": (2, 2),
    "rnn": (2, 2),
    "conv": (2, 2, 3),
    "residual_drop": (2, 2),
}
#: What a model may declare about itself (``TRAITS`` on the class) beyond its places.
TRAITS = {
    "feature_maps": "conv feature maps",
    "time_axis": "a time axis",
}

#: Makes one regularizer layer (e.g. ``functools.partial(Dropout, p=0.5)``).
DropFactory = Callable[[], nn.Module]
#: What the ``drop`` slot takes: one factory for every hidden layer, or one per hidden layer.
DropFactories = DropFactory | Sequence[DropFactory]
#: Makes a fully connected layer from (in_features, out_features).
LinearFactory = Callable[[int, int], nn.Module]
#: Makes a conv layer from (in_channels, out_channels, kernel_size) and ``padding=``, as ``nn.Conv2d``.
ConvFactory = Callable[..., nn.Module]
#: ``model.activation``'s choices: the module a hidden layer applies, and the same function
#: (which a reg layer applying the activation itself is given: configs/reg/dropconnect.yaml)
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
#: ``model.norm``'s choices: none, or batch normalisation between a layer and its activation
NORMS = ("none", "batch")
#: ``place`` of a ``drop`` layer: after the activation (the Dropout paper's) or before it
PLACES = ("after", "before")


class LayerCountError(ValueError):
    """Per-layer drop factories whose number is not the model's number of hidden layers.

    ``layers`` says what sets that number (``model.hidden=[800, 800]``), so that the config's
    check (:mod:`dropbench.build`) can name both settings before any data loads."""

    def __init__(self, given: int, needed: int, layers: str) -> None:
        self.given, self.needed, self.layers = given, needed, layers
        super().__init__(
            f"{given} drop factories for {needed} hidden layers ({layers}); give one factory or {needed}"
        )


def per_layer(drop: DropFactories | None, count: int, layers: str) -> list[DropFactory | None]:
    """``drop`` for each of ``count`` hidden layers: one factory (or None) for all of them, or a
    sequence of exactly ``count`` factories, the i-th for the i-th hidden layer. ``layers`` names
    what sets ``count`` (:class:`LayerCountError`)."""
    if drop is None or callable(drop):
        return [drop] * count
    drops = list(drop)
    if len(drops) != count:
        raise LayerCountError(len(drops), count, layers)
    return drops


def make_drop_after(drop: DropFactory | None, model: str) -> nn.Module:
    """:func:`make_drop` for a model that places its drop layers only one way (after its
    activation, or where it has none): ``place=before`` is refused, never ignored."""
    layer = make_drop(drop)
    if getattr(layer, "place", "after") != "after":
        raise ValueError(
            f"reg.place={layer.place}: {model} puts its drop layers in one place; use reg.place=after"
        )
    return layer


def check_choice(key: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is invalid; valid: {', '.join(choices)}")
    return value


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function of ``model.activation`` ``name`` (``torch.relu`` for relu)."""
    return ACTIVATION_FUNCTIONS[check_choice("model.activation", name, tuple(ACTIVATION_FUNCTIONS))]


def hidden_unit(
    layer: nn.Module,
    units: int,
    drop: DropFactory | None,
    activation: str,
    norm: str,
    batch_norm: type[nn.Module] = nn.BatchNorm1d,
) -> list[nn.Module]:
    """``layer`` -> [batch_norm(units)] -> activation -> drop, with the drop layer before the
    activation when its ``place`` is ``before``. No norm module at ``norm="none"`` (the layers'
    indices, so the state dict's keys, stay those of a model without the option); no activation
    after a layer that applies it itself."""
    check_choice("model.activation", activation, tuple(ACTIVATIONS))
    check_choice("model.norm", norm, NORMS)
    own = getattr(layer, "activation", None) is not None
    if own and norm != "none":
        raise ValueError(
            f"model.norm={norm} puts a norm between a layer and its activation, and this reg's layers "
            "apply the activation themselves (DropConnect); use model.norm=none"
        )
    dropping = make_drop(drop)
    place = check_choice("reg.place", getattr(dropping, "place", "after"), PLACES)
    act = nn.Identity() if own else ACTIVATIONS[activation]()
    normed = [layer] if norm == "none" else [layer, batch_norm(units)]
    return [*normed, act, dropping] if place == "after" else [*normed, dropping, act]


def make_drop(drop: DropFactory | None) -> nn.Module:
    """A fresh regularizer layer, or ``nn.Identity`` when the run has none."""
    return drop() if drop is not None else nn.Identity()


def classifier_head(
    width: int,
    hidden: Sequence[int],
    num_classes: int,
    drop: DropFactories | None = None,
    linear: LinearFactory | None = None,
    activation: str = "relu",
    norm: str = "none",
    hidden_key: str = "model.hidden",
) -> nn.Sequential:
    """Flatten -> [Linear -> [BatchNorm] -> activation -> drop] per entry of ``hidden`` -> Linear
    to ``num_classes`` (:func:`hidden_unit`).

    The regularizer follows each hidden activation, where the Dropout paper puts it (unless its
    ``place`` says before); ``drop`` is one factory for every hidden layer or one per layer
    (:func:`per_layer`; ``hidden_key`` is the setting ``hidden`` comes from, for its message).
    ``linear`` (DropConnect) builds the hidden layers, while the output layer stays a plain
    ``nn.Linear``.
    """
    make_linear = linear or nn.Linear
    drops = per_layer(drop, len(hidden), f"{hidden_key}={list(hidden)}")
    layers: list[nn.Module] = [nn.Flatten()]
    for units, unit_drop in zip(hidden, drops, strict=True):
        layers += hidden_unit(make_linear(width, units), units, unit_drop, activation, norm)
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
