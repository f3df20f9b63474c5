"""The run schema: every setting of ``configs/config.yaml`` declared once, with its role.

A setting's role says what it is to a run:

- ``identity``: defines the result and is spelled out in the run folder's path
  (``dataset/model/reg/p/seed``);
- ``result``: defines the result; an override of it adds a folder level (``lr=0.01,...``);
- ``runtime``: where and how fast a run computes (device, threads, paths): it may differ
  between an attempt and its resumption, and never names a folder;
- ``control``: how dropbench treats the run (``force``, the sweep's ``name``), not what it computes;
- ``wiring``: how a config group is plugged into the code (``reg.layers``, ``reg.folder``): code,
  not a setting; never compared, grouped or labelled.

Settings inside the config groups (``model.hidden``, ``dataset.train_size``, ``reg.mask``,
``optimizer.momentum``...) define the result unless declared here otherwise.

Everything that needs one of these lists derives it from here: the knob checks
(:func:`check_knobs`), the resume identity (:func:`result_defining`), the folder name's
excluded keys (``configs/config.yaml`` must agree: a test checks), the record's settings
(:func:`run_settings`), the report's grouping and labels, and the HParams summary.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from dropbench import checks
from dropbench.models.common import ACTIVATIONS, NORMS
from dropbench.models.resnet import blocks_per_stage, check_widths


class Role(str, Enum):
    IDENTITY = "identity"
    RESULT = "result"
    RUNTIME = "runtime"
    CONTROL = "control"
    WIRING = "wiring"


#: Roles of settings that decide a run's numbers.
DEFINING = (Role.IDENTITY, Role.RESULT)


def knob(role: Role, check: checks.Check, key: str | None = None, penalty: bool = False, labels: bool = True):
    """A top-level knob: its role, its check, its dotted key (default: the field name).

    ``penalty``: a regularizer's strength of its own (wd, l1, max_norm): a table names it whenever it
    is on. ``labels``: whether a table row must name it when it varies (MC samples change only
    the ``test_mc`` metrics, so they do not split rows).
    """
    return field(metadata={"role": role, "check": check, "key": key, "penalty": penalty, "labels": labels})


def dataset_names() -> list[str]:
    """The dataset choices: the files of ``configs/dataset/``."""
    from dropbench.preflight import config_dir, group_choices  # preflight imports this module

    return group_choices(config_dir(), "dataset")


def compile_choices() -> tuple[str, ...]:
    """The ``compile`` choices (:data:`dropbench.train.COMPILE_CHOICES`, imported when checked)."""
    from dropbench.train import COMPILE_CHOICES

    return COMPILE_CHOICES


@dataclass(frozen=True)
class Knobs:
    """The top-level options of ``configs/config.yaml``, validated and typed. Field order is the
    order in which records list them and labels name them."""

    p: float = knob(Role.IDENTITY, checks.probability)
    seed: int = knob(Role.IDENTITY, checks.whole(0, 2**64 - 1))  # torch.manual_seed's range
    wd: float = knob(Role.RESULT, checks.non_negative, penalty=True)
    l1: float = knob(Role.RESULT, checks.non_negative, penalty=True)
    max_norm: float | None = knob(Role.RESULT, checks.optional(checks.positive), penalty=True)
    lr: float = knob(Role.RESULT, checks.positive)
    epochs: int = knob(Role.RESULT, checks.whole(1))
    patience: int | None = knob(Role.RESULT, checks.optional(checks.whole(1)))
    batch_size: int = knob(Role.RESULT, checks.whole(1))
    mc_samples: int | None = knob(
        Role.RESULT, checks.optional(checks.whole(1)), key="eval.mc_samples", labels=False
    )
    # a dataset of the same image shape (build.check_ood checks the shape); adds only ood/*
    ood: str | None = knob(
        Role.RESULT, checks.optional(checks.one_of(dataset_names)), key="eval.ood", labels=False
    )
    eval_batch_size: int = knob(Role.RUNTIME, checks.whole(1))
    device: torch.device = knob(Role.RUNTIME, checks.device)
    threads: int | None = knob(Role.RUNTIME, checks.optional(checks.whole(1)))
    # how the training step runs (eager, or compiled: CUDA graphs on a GPU); a compiled step
    # draws the same masks and differs by float rounding only, as another device or thread
    # count does: runtime, so resuming with another choice is allowed and no folder is named
    compile: str = knob(Role.RUNTIME, checks.switch(lambda: compile_choices()))
    force: bool = knob(Role.CONTROL, checks.boolean)


@dataclass(frozen=True)
class Setting:
    key: str  # dotted path in the resolved config
    role: Role
    penalty: bool = False
    labels: bool = True


#: (setting, Knobs field name) of every knob.
KNOB_FIELDS = tuple(
    (
        Setting(f.metadata["key"] or f.name, f.metadata["role"], f.metadata["penalty"], f.metadata["labels"]),
        f.name,
    )
    for f in dataclasses.fields(Knobs)
)


#: Config groups (one folder of ``configs/`` each), in the order records list their choices.
GROUPS = (
    Setting("model", Role.IDENTITY),
    Setting("dataset", Role.IDENTITY),
    Setting("reg", Role.IDENTITY),
    Setting("optimizer", Role.RESULT),
    Setting("schedule", Role.RESULT),
    Setting("experiment", Role.CONTROL),  # sets other settings; itself names no result
)
KNOBS = tuple(setting for setting, _ in KNOB_FIELDS)
#: Settings that are neither a group nor a knob of :class:`Knobs`.
OTHERS = (
    Setting("results_dir", Role.RUNTIME),
    Setting("name", Role.CONTROL),
    Setting("dataset.root", Role.RUNTIME),
    Setting("dataset.cache_dir", Role.RUNTIME),
    Setting("dataset.download", Role.RUNTIME),
    Setting("dataset.verify", Role.RUNTIME),
    Setting("dataset.system_dirs", Role.RUNTIME),
    Setting("dataset.install_hint", Role.RUNTIME),
    Setting("reg.layers", Role.WIRING),
    Setting("reg.per_layer", Role.WIRING),  # which layer setting reg.layer_p gives per layer
    Setting("reg.folder", Role.WIRING),
    Setting("reg.uses_p", Role.WIRING),
    Setting("reg.requires", Role.WIRING),
    Setting("reg.wd", Role.WIRING),  # the default of the top-level wd, which is the setting
)
SETTINGS = (*GROUPS, *KNOBS, *OTHERS)
#: Checks of group settings whose yaml default (null) gives no kind to keep (the others keep
#: their default's kind: :func:`dropbench.build.check_group_types`), and of the model settings
#: that name a choice (absent from models without them: the LSTM has no ``model.activation``),
#: or whose valid values a model's own rule gives (the ResNet's depth 6n+2).
#: Ranges that depend on the data (train_size at most the examples left after val_size) are
#: checked when it loads.
GROUP_SETTING_CHECKS = {
    "dataset.train_size": checks.optional(checks.whole(1)),
    "model.activation": checks.optional(checks.one_of(lambda: tuple(ACTIVATIONS))),
    "model.norm": checks.optional(checks.one_of(lambda: NORMS)),
    "model.depth": checks.optional(checks.rule(blocks_per_stage)),
    "model.widths": checks.optional(checks.rule(check_widths)),
}


def keys(*roles: Role, among: tuple[Setting, ...] = SETTINGS) -> tuple[str, ...]:
    return tuple(s.key for s in among if s.role in roles)


#: Settings that do not decide a run's numbers (dotted paths into the resolved config).
NOT_RESULT_DEFINING = keys(Role.RUNTIME, Role.CONTROL, Role.WIRING)
#: Keys the folder name's ``override_dirname`` leaves out: in the path already, or not defining.
FOLDER_EXCLUDED = keys(Role.IDENTITY, Role.RUNTIME, Role.CONTROL)
#: The groups whose own settings (``model.hidden``, ...) are a run's setup, for the report.
SETUP_GROUPS = tuple(s.key for s in GROUPS if s.role in DEFINING and s.key != "reg")
#: Identity and result knobs and group choices: what a record's ``config`` lists.
RECORDED = keys(*DEFINING, among=(*GROUPS, *KNOBS))
#: Of these, the setup a table row names when it varies (not identity, not a penalty).
LABELLED_SETUP = tuple(
    s.key for s in (*GROUPS, *KNOBS) if s.role == Role.RESULT and s.labels and not s.penalty
)
PENALTIES = tuple(s.key for s in KNOBS if s.penalty)


def lookup(tree: dict[str, Any], key: str) -> Any:
    """The value at a dotted ``key`` of nested dicts, or None where a level is missing."""
    for part in key.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def check_knobs(values: dict[str, Any]) -> Knobs:
    """Validate the top-level options and :data:`GROUP_SETTING_CHECKS`; the first bad one raises
    a one-line ConfigError."""
    check_group_settings(values)
    checks_by_field = {f.name: f.metadata["check"] for f in dataclasses.fields(Knobs)}
    return Knobs(**{name: checks_by_field[name](s.key, lookup(values, s.key)) for s, name in KNOB_FIELDS})


def check_group_settings(values: dict[str, Any]) -> None:
    """Validate the group settings of :data:`GROUP_SETTING_CHECKS` that this config has."""
    for key, check in GROUP_SETTING_CHECKS.items():
        check(key, lookup(values, key))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def is_under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(f"{s}.") for s in prefixes)


def result_defining(resolved: dict[str, Any], uses_p: bool) -> dict[str, Any]:
    """The flattened settings that decide a run's numbers (p only when the reg uses it)."""
    skipped = NOT_RESULT_DEFINING if uses_p else (*NOT_RESULT_DEFINING, "p")
    return {key: value for key, value in flatten(resolved).items() if not is_under(key, skipped)}


@functools.cache
def _declared(choices: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from dropbench.preflight import config_dir  # preflight imports this module

    chosen = dict(choices)
    top = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"), resolve=False)
    merged = OmegaConf.merge(
        {key: value for key, value in top.items() if key not in ("defaults", "hydra")},
        *(
            {s.key: OmegaConf.load(config_dir() / s.key / f"{chosen[s.key]}.yaml")}
            for s in GROUPS
            if s.role in DEFINING and chosen.get(s.key)
        ),
    )
    flat = flatten(OmegaConf.to_container(merged, resolve=False))
    # an interpolated default (p_input: ${p}) is text here, never a value a run had
    return {k: v for k, v in flat.items() if not (isinstance(v, str) and "${" in v)}


def declared_defaults(choices: dict[str, Any]) -> dict[str, Any]:
    """Every setting's literal default as the yaml files declare it, flattened (``l1``,
    ``reg.place``): ``configs/config.yaml`` and the chosen file of each group, without an
    experiment's or the command line's values. What a run made before a setting existed ran
    with, so resume (:func:`config_conflict`) and the report fill it in from here."""
    return _declared(tuple(sorted((k, str(v)) for k, v in choices.items() if v is not None)))


def with_defaults(resolved: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``resolved`` (nested) with the settings it lacks added from ``defaults`` (flattened)."""
    filled = copy.deepcopy(resolved)
    for key, value in defaults.items():
        *parents, leaf = key.split(".")
        node = filled
        for parent in parents:
            node = node.setdefault(parent, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(leaf, value)
    return filled


def config_conflict(
    stored: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any] | None = None
) -> str | None:
    """None if two ``result_defining`` configs agree, else a short account of how they differ.

    A setting the stored config lacks was added to dropbench after that run: the run computed
    what its declared default computes, so it agrees when the current value is that default
    (``defaults``: the flattened yaml defaults, :func:`dropbench.build.declared_defaults`)."""
    defaults = defaults or {}

    def agree(key: str) -> bool:
        if key not in stored and key in defaults:
            return current.get(key) == defaults[key]
        return stored.get(key) == current.get(key)

    keys = sorted(k for k in stored.keys() | current.keys() if not agree(k))
    if not keys:
        return None
    shown = "; ".join(f"{k}: {stored.get(k)!r} there, {current.get(k)!r} now" for k in keys[:3])
    more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
    return shown + more


def run_settings(knobs: Knobs, choices: dict[str, str], uses_p: bool) -> dict[str, Any]:
    """The settings a record lists and a report groups and labels runs by (:data:`RECORDED`);
    p is None for a reg that ignores it."""
    values = {s.key: choices.get(s.key) for s in GROUPS}
    values.update({s.key: getattr(knobs, name) for s, name in KNOB_FIELDS})
    settings = {key: values[key] for key in RECORDED}
    if not uses_p:
        settings["p"] = None
    return settings


def group_settings(resolved: dict[str, Any], group: str) -> dict[str, Any]:
    """A group's own settings as ``group.key`` (lists kept; sections, ``_target_``-style keys and
    settings that define no result left out)."""
    section = resolved.get(group)
    if not isinstance(section, dict):
        return {}
    return {
        f"{group}.{key}": value
        for key, value in section.items()
        if not key.startswith("_")
        and not isinstance(value, dict)
        and not is_under(f"{group}.{key}", NOT_RESULT_DEFINING)
    }


def setup_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """The setup groups' own settings (``model.hidden``, ``dataset.train_size``...)."""
    return {key: value for group in SETUP_GROUPS for key, value in group_settings(resolved, group).items()}


def reg_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """The regularizer's own settings (``mask``, ``input_p``, ``layer_p``...), keyed without ``reg.``."""
    return {key.removeprefix("reg."): value for key, value in group_settings(resolved, "reg").items()}
