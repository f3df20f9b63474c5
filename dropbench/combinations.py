"""Which regularizer can regularize which model: derived from what each declares.

A regularizer declares the places it acts on (``layers:`` in ``configs/reg/*.yaml``, named as
in :data:`dropbench.models.common.SLOTS`) and, where a place is not specific enough, the traits
it needs of a model (``requires:``, e.g. conv_dropout needs conv feature maps, which the
LSTM's channel place is not). A model offers the places its constructor accepts and the
traits it declares (``TRAITS``). A pair is valid when the reg places nothing (none, l2), or the
model offers at least one of its places and every trait it requires. Nothing here is a list
kept by hand.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

from hydra.utils import get_class
from omegaconf import OmegaConf

from dropbench.errors import ConfigError
from dropbench.models.common import SLOTS, TRAITS
from dropbench.preflight import config_dir, group_choices


@dataclass(frozen=True)
class RegNeeds:
    places: frozenset[str]  # slots it fills; empty for none and l2
    requires: frozenset[str]  # model traits it needs


@dataclass(frozen=True)
class ModelOffers:
    title: str  # "the MLP"
    places: frozenset[str]
    traits: frozenset[str]


def model_offers(model_class: type) -> ModelOffers:
    """The slots a model class accepts (its constructor's parameters named like a slot) and traits."""
    places = frozenset(inspect.signature(model_class).parameters) & SLOTS.keys()
    return ModelOffers(f"the {model_class.__name__}", places, frozenset(getattr(model_class, "TRAITS", ())))


@functools.cache
def declarations() -> tuple[dict[str, RegNeeds], dict[str, ModelOffers]]:
    """Every reg's needs and every model's offers, read from ``configs/`` and the model classes."""
    configs = config_dir()
    regs = {}
    for name in group_choices(configs, "reg"):
        node = OmegaConf.load(configs / "reg" / f"{name}.yaml")
        places = frozenset(slot for slot, layer in (node.get("layers") or {}).items() if layer is not None)
        regs[name] = RegNeeds(places, frozenset(node.get("requires") or ()))
    models = {
        name: model_offers(get_class(OmegaConf.load(configs / "model" / f"{name}.yaml")._target_))
        for name in group_choices(configs, "model")
    }
    return regs, models


def fits(needs: RegNeeds, offers: ModelOffers) -> bool:
    places_ok = not needs.places or bool(needs.places & offers.places)
    return places_ok and needs.requires <= offers.traits


def refusal(model: str, reg: str) -> str | None:
    """Why ``reg`` cannot regularize ``model`` (with the regs that can), or None when it can."""
    regs, models = declarations()
    needs, offers = regs[reg], models[model]
    if fits(needs, offers):
        return None
    if needs.places and not needs.places & offers.places:
        # "offers", not "has": a ResNet has conv layers, but none that a reg may rebuild
        missing = f"it acts on {' or '.join(SLOTS[s] for s in sorted(needs.places))}"
        lacks = f"{offers.title} offers no such place"
    else:
        missing = f"it needs {' and '.join(TRAITS[t] for t in sorted(needs.requires - offers.traits))}"
        lacks = f"{offers.title} has none"
    others = [name for name, n in regs.items() if n.places and fits(n, offers)]
    named = [f"reg={name}" for name in others]
    use = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
    return f"{missing}, and {lacks}; use {use}"


def invalid_pairs() -> dict[tuple[str, str], str]:
    """Every refused (model, reg) pair with its reason: the model x reg table."""
    regs, models = declarations()
    found = {(model, reg): refusal(model, reg) for model in models for reg in regs}
    return {pair: reason for pair, reason in found.items() if reason is not None}


def check_combination(model: str, reg: str) -> None:
    """Raise a one-line ConfigError if ``reg`` cannot regularize ``model``."""
    reason = refusal(model, reg)
    if reason is not None:
        raise ConfigError(f"reg={reg} does not apply to model={model}: {reason}")
