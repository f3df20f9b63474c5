"""What the reg places in the model's slots, from ``configs/reg/*.yaml``: its layer factories,
one per hidden layer where ``reg.per_layer`` gives per-layer values, and the checks made of them
before any data loads. Part of the build step (:mod:`dropbench.build`, which alone calls it): it
reads the reg's DictConfig and hands the model plain factories.

``per_layer`` names, for a slot, the layer parameters that a setting gives one value per hidden
layer (dropout's ``drop: {p: ${reg.layer_p}}``). When that setting is a list, the slot gets a
list of factories, the i-th with the i-th value, and the model takes one per hidden layer
(:func:`dropbench.models.common.per_layer`); when it is null, the slot's one factory serves
every layer, exactly as without the option.
"""

from __future__ import annotations

import re
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dropbench.combinations import model_offers
from dropbench.errors import ConfigError, DropbenchError
from dropbench.models.common import SIZED_SLOTS, SLOTS, LayerCountError
from dropbench.preflight import config_dir, group_choices

#: A layer's error names its parameter first (``p=1.5 is out of range``), as the layers check them
_NAMED_VALUE = re.compile(r"^(\w+)=")
#: A layer parameter given by a setting of the config: ``p: ${reg.input_p}``
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")
#: A message that names its setting by its full key (``model.norm=batch ...``) needs no group prefix
_FULL_KEY = re.compile(r"^\w+(\.\w+)+=")


def group_error(group: str, cause: BaseException) -> DropbenchError:
    """One line for an error a config group's ``_target_`` raised: its own text when it names
    its setting by full key, else prefixed by the group."""
    if isinstance(cause, DropbenchError):
        return cause
    text = " ".join(str(cause).split())
    return ConfigError(text if _FULL_KEY.match(text) else f"{group}: {text}")


def instantiate_group(group: str, node: Any, **kwargs: Any) -> Any:
    """Instantiate one config group's ``_target_``; a bad value there becomes a one-line ConfigError."""
    try:
        return instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as error:
        raise group_error(group, error.__cause__ or error) from None


def model_slots(cfg: DictConfig) -> dict[str, Any]:
    """The reg's layer configs for the places this model has (a reg may serve several models:
    DropConnect builds an MLP's linear layers and an LSTM's recurrent ones)."""
    places = model_offers(get_class(cfg.model._target_)).places
    given = {slot: node for slot, node in cfg.reg.layers.items() if node is not None}
    used = {slot: node for slot, node in given.items() if slot in places}
    if given and not used:  # the model x reg table should have stopped this run: never train unregularized
        raise ConfigError(f"the reg acts on {', '.join(given)}, and the model has none of these places")
    return used


def setting_key(raw: Any, fallback: str) -> str:
    """The setting a yaml value interpolates (``${reg.layer_p}`` -> ``reg.layer_p``), else ``fallback``."""
    given = _INTERPOLATION.match(str(raw))
    return given.group(1) if given else fallback


def per_layer_settings(cfg: DictConfig, slot: str) -> dict[str, tuple[str, list[Any]]]:
    """The layer parameters of ``slot`` given one value per hidden layer, as parameter -> (the
    setting's full key, its values); a setting left null gives none."""
    node = (cfg.reg.get("per_layer") or {}).get(slot)
    if node is None:
        return {}
    raw = OmegaConf.to_container(node, resolve=False)
    found = {}
    for param, values in OmegaConf.to_container(node, resolve=True).items():
        key = setting_key(raw[param], f"reg.per_layer.{slot}.{param}")
        if values is None:
            continue
        if not isinstance(values, list):
            raise ConfigError(
                f"{key}={values!r} is invalid; {key} must be a list, one value per hidden layer "
                "(e.g. [0.3, 0.5]), or null"
            )
        found[param] = (key, values)
    if len({len(values) for _, values in found.values()}) > 1:
        raise ConfigError(f"{' and '.join(key for key, _ in found.values())} must be lists of one length")
    return found


def slot_factories(cfg: DictConfig, built: set[str] | None = None) -> dict[str, Any]:
    """The model's keyword arguments for the reg: per slot one factory, or, where ``per_layer``
    gives values, a list of factories, one per value. With ``built``, each factory adds its slot
    to that set when the model calls it (:func:`check_idle_settings`)."""
    made = {}
    for slot, node in model_slots(cfg).items():
        given = per_layer_settings(cfg, slot)
        if not given:
            factories = [instantiate_group("reg", node)]
        else:
            rows = zip(*(values for _, values in given.values()), strict=True)
            factories = [instantiate_group("reg", node, **dict(zip(given, row, strict=True))) for row in rows]
        if built is not None:
            factories = [noting(slot, factory, built) for factory in factories]
        made[slot] = factories if given else factories[0]
    return made


def noting(slot: str, factory: Any, built: set[str]) -> Any:
    """``factory``, adding ``slot`` to ``built`` whenever it is called."""

    def build(*args: Any, **kwargs: Any) -> Any:
        built.add(slot)
        return factory(*args, **kwargs)

    return build


def slot_setting_keys(cfg: DictConfig, slot: str) -> set[str]:
    """The settings a slot's layers take their parameters from (``p``, ``reg.conv_p``, ``reg.layer_p``)."""
    raw = OmegaConf.to_container(cfg.reg.layers[slot], resolve=False)
    keys = {setting_key(value, "") for value in raw.values() if isinstance(value, str)}
    keys |= {key for key, _ in per_layer_settings(cfg, slot).values()}  # those given (null sets nothing)
    return keys - {""}


def check_idle_settings(cfg: DictConfig, built: set[str], defaults: dict[str, Any], reg: str) -> None:
    """A reg setting that only layers the model never built take (``reg.conv_p`` on the MLP, which
    has no conv layers; ``p`` on a CNN whose ``model.fc=[]`` leaves no hidden activation to drop)
    sets nothing: refused, never silently ignored. A setting other than p may stay at its
    default; p, the reg's strength, may not (the run would not be regularized by it)."""
    given = [slot for slot, node in cfg.reg.layers.items() if node is not None]
    keys = {slot: slot_setting_keys(cfg, slot) for slot in given}
    taken = set().union(*(keys[slot] for slot in given if slot in built))
    unbuilt = [slot for slot in given if slot not in built]
    idle = {key: [s for s in unbuilt if key in keys[s]] for key in set().union(*keys.values())}
    for key, slots in sorted(idle.items()):
        value = OmegaConf.select(cfg, key)
        if key in taken or (key != "p" and (value is None or value == defaults.get(key, value))):
            continue
        fix = "give the model such layers, or use reg=none" if key == "p" else f"use {key}={defaults[key]}"
        raise ConfigError(
            f"{key}={value} sets nothing: reg={reg} uses it on {' and '.join(SLOTS[s] for s in slots)}, "
            f"and {model_choice(cfg)} with these settings builds none; {fix}"
        )


def check_reg_layers(cfg: DictConfig) -> None:
    """Build each of the reg's layers this model uses once, tiny, so that a bad reg setting
    (``reg.input_p=1.5``, ``reg.layer_p=[0.3, 1.5]``) fails before any data loads, under its full
    key: the layers are the one place that knows their settings' valid values."""
    for slot, made in slot_factories(cfg).items():
        node, given = cfg.reg.layers[slot], per_layer_settings(cfg, slot)
        for index, factory in enumerate(made if isinstance(made, list) else [made]):
            try:
                factory(*SIZED_SLOTS.get(slot, ()))
            except (ValueError, TypeError) as error:
                keys = {param: f"{key}[{index}]" for param, (key, _) in given.items()}
                raise ConfigError(under_full_key(str(error), slot, node, keys)) from None


def under_full_key(message: str, slot: str, node: DictConfig, keys: dict[str, str] | None = None) -> str:
    """A layer's message about its parameter (``p=1.5 ...; p is ...``) about the setting the
    user gave instead (``reg.input_p=1.5 ...; reg.input_p is ...``); ``keys`` names the
    parameters a per-layer setting gave (``p`` -> ``reg.layer_p[1]``)."""
    named = _NAMED_VALUE.match(message)
    params = OmegaConf.to_container(node, resolve=False)
    if named is None or named.group(1) not in params:
        return f"reg: {message}"
    name = named.group(1)
    key = (keys or {}).get(name) or setting_key(params[name], f"reg.layers.{slot}.{name}")
    return re.sub(rf"(?<![\w.]){name}(?!\w)", key, message)


def check_replaced_settings(cfg: DictConfig, defaults: dict[str, Any]) -> None:
    """A setting whose place per-layer values take (p, when ``reg.layer_p`` gives every hidden
    layer its rate) sets nothing then; it must keep its declared default (``defaults``), so
    that such a run has one folder (the path names p) and one p in its record."""
    for slot, node in model_slots(cfg).items():
        raw = OmegaConf.to_container(node, resolve=False)
        for param, (key, values) in per_layer_settings(cfg, slot).items():
            replaced = setting_key(raw.get(param), "")
            if replaced not in defaults:
                continue  # a literal in the yaml, or a setting without a default of its own
            value, default = OmegaConf.select(cfg, replaced), defaults[replaced]
            if value != default:
                raise ConfigError(
                    f"{replaced}={value} sets nothing when {key}={values} gives each hidden layer its "
                    f"rate; use {replaced}={default} (its default) or {key}=null"
                )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def model_choice(cfg: DictConfig) -> str:
    """``model=mlp``: the choice of ``configs/model/`` whose ``_target_`` built this model."""
    target = cfg.model._target_
    for name in group_choices(config_dir(), "model"):
        if OmegaConf.load(config_dir() / "model" / f"{name}.yaml").get("_target_") == target:
            return f"model={name}"
    return model_offers(get_class(target)).title  # a model composed by hand: "the MLP"


def layer_count_message(cfg: DictConfig, error: LayerCountError) -> str:
    """'reg.layer_p=[0.3] has 1 rate and model=mlp has 2 hidden layers (model.hidden=[800, 800]);
    give 2 rates, or use reg.layer_p=null': the per-layer setting the model's count refused, and
    that count."""
    given = [setting for slot in model_slots(cfg) for setting in per_layer_settings(cfg, slot).values()]
    if not given:
        return f"model: {error}"
    key, values = given[0]
    needed = error.needed
    return (
        f"{key}={values} has {plural(error.given, 'rate')} and {model_choice(cfg)} has "
        f"{plural(needed, 'hidden layer')} ({error.layers}); give {plural(needed, 'rate')}, or use {key}=null"
    )


def instantiate_model(
    cfg: DictConfig, in_shape: tuple[int, ...], num_classes: int, built: set[str] | None = None
) -> Any:
    """The model of ``cfg.model`` with the reg's factories in its slots (``built``: see
    :func:`slot_factories`)."""
    factories = slot_factories(cfg, built)
    try:
        return instantiate(
            cfg.model, in_shape=in_shape, num_classes=num_classes, **factories, _convert_="all"
        )
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, LayerCountError):
            raise ConfigError(layer_count_message(cfg, cause)) from None
        raise group_error("model", cause) from None
