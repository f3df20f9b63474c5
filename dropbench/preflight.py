"""Checks made before Hydra starts, for mistakes Hydra would report as a multi-line traceback.

Hydra stays the registry: the valid choices of a group are the yaml files in its folder.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from dropbench.atomic import NEARLY_FULL, is_full
from dropbench.errors import ConfigError
from dropbench.schema import GROUPS

GROUP_NAMES = tuple(group.key for group in GROUPS)


class Plugin(NamedTuple):
    """A Hydra plugin that some choices of a hydra/ group need, and dropbench's pip extra for it."""

    module: str  # what find_spec looks for
    extra: str  # pip install 'dropbench[EXTRA]'
    title: str  # for the message


JOBLIB = Plugin("hydra_plugins.hydra_joblib_launcher", "parallel", "Hydra's joblib launcher")
SUBMITIT = Plugin("hydra_plugins.hydra_submitit_launcher", "slurm", "Hydra's submitit launcher")
OPTUNA = Plugin("hydra_plugins.hydra_optuna_sweeper", "search", "Hydra's Optuna sweeper")

#: (group, choice) -> the plugin behind it: ours (configs/hydra/*/) and the plugins' own names
PLUGIN_CHOICES = {
    ("hydra/launcher", "joblib"): JOBLIB,
    ("hydra/launcher", "slurm"): SUBMITIT,
    ("hydra/launcher", "submitit_slurm"): SUBMITIT,
    ("hydra/launcher", "submitit_local"): SUBMITIT,
    ("hydra/sweeper", "search"): OPTUNA,
    ("hydra/sweeper", "optuna"): OPTUNA,
}


def config_dir() -> Path:
    """``configs/`` of a source checkout (editable install), else the copy inside the package."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "configs", package / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"no configs/config.yaml found next to {package}; reinstall dropbench")


def group_choices(configs: Path, group: str) -> list[str]:
    """The options of a config group, subfolders included (``experiment=lstm_fair/naive``)."""
    folder = configs / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def override_values(argument: str) -> tuple[str, list[str]] | None:
    """(key, values) of a plain or choice-sweep override such as ``reg=none,dropout``; None otherwise."""
    try:
        override = OverridesParser.create().parse_override(argument)
    except HydraException:
        return None  # Hydra will report its own syntax errors
    if override.is_delete() or override.package is not None:
        return None
    if override.is_sweep_override():
        if not override.is_choice_sweep():
            return None  # ranges and globs: Hydra expands them
        return override.key_or_group, list(override.sweep_string_iterator())
    return override.key_or_group, [override.get_value_element_as_str()]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent, the hydra_plugins namespace, is missing too
        return False


def check_plugin(group: str, choice: str) -> None:
    """A hydra/launcher or hydra/sweeper choice whose plugin is not installed names its pip extra."""
    plugin = PLUGIN_CHOICES.get((group, choice))
    if plugin is not None and not installed(plugin.module):
        raise ConfigError(f"{group}={choice} needs {plugin.title}; pip install 'dropbench[{plugin.extra}]'")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there, and that there is room
    (on a full disk an empty file can still be made; Hydra's first write would fail)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"results_dir={str(folder)!r} is not writable ({reason}); choose another with results_dir=PATH"
        ) from None
    if is_full(folder):
        raise ConfigError(
            f"results_dir={str(folder)!r}: no space left on device (under {NEARLY_FULL >> 20} MiB free); "
            "free some or choose another with results_dir=PATH"
        )


def check_overrides(arguments: list[str], configs: Path) -> None:
    """Unknown group choices, missing Hydra plugins and an unwritable results_dir fail here with one line."""
    results_dir = OmegaConf.load(configs / "config.yaml").results_dir
    given: dict[str, list[str]] = {}
    prefixes: dict[str, str] = {}  # "+" adds a key, "++" sets or adds it
    for argument in arguments:
        if argument.startswith("-") or "=" not in argument:
            continue  # Hydra's flags (--cfg job, -m, --help) and their values
        parsed = override_values(argument)
        if parsed is None:
            continue
        key, values = parsed
        given[key] = values
        prefixes[key] = argument[: len(argument) - len(argument.lstrip("+"))]
        if key == "results_dir":
            results_dir = values[0]
        for value in values:
            check_plugin(key, value)
        if key in GROUP_NAMES:
            valid = group_choices(configs, key)
            for value in values:
                if value not in valid:
                    raise ConfigError(f"{key}={value!r} is not a known {key}; valid: {', '.join(valid)}")
    check_keys(given, prefixes)
    if "--cfg" not in arguments and "-c" not in arguments and "--help" not in arguments:
        check_writable(Path(os.path.expanduser(str(results_dir))))


def known_keys(cfg) -> list[str]:
    """Every dotted key of a composed config (unresolved), for suggestions."""
    from dropbench.schema import flatten

    flat = flatten(OmegaConf.to_container(cfg, resolve=False))
    return [key for key in flat if not any(part.startswith("_") for part in key.split("."))]


def check_keys(given: dict[str, list[str]], prefixes: dict[str, str] | None = None) -> None:
    """A key that no config has (``epoch=3`` for ``epochs=3``) is one line naming the closest valid key.

    Hydra would print a multi-line error and suggest ``+epoch=3``, which trains silently with
    the default epochs: nothing in dropbench reads a key its configs lack, so an added one
    (``+epoch=3``, ``++foo=1``) is refused the same way; only Hydra's own (``+hydra.*``) pass.
    ``given`` maps each override's key to its values, ``prefixes`` to its ``+`` or ``++``; Hydra
    refuses (in many lines) to ``+`` a key that exists. A group's own key
    (``reg.mask``) is valid if any chosen value of that group (``reg=dropout,dropconnect``) has it.
    """
    import difflib

    choices = {key: values for key, values in given.items() if key in GROUP_NAMES}
    for key, values in given.items():
        if key in GROUP_NAMES or "/" in key or key == "hydra" or key.startswith("hydra."):
            continue
        group = key.split(".")[0]
        configs = [composed(choices, group, value) for value in choices.get(group, [None])]
        prefix = (prefixes or {}).get(key, "")
        shown = f"{prefix}{key}={values[0]}"
        if any(OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING for cfg in configs):
            if prefix == "+":
                raise ConfigError(f"{shown} adds {key}, which exists already; use {key}={values[0]}")
            continue
        close = difflib.get_close_matches(key, known_keys(configs[-1]), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; 'dropbench run --help' lists every option"
        raise ConfigError(f"{shown} sets nothing: no setting is named {key}{hint}")


def composed(choices: dict[str, list[str]], group: str, value: str | None):
    """The config with every group at its first chosen value, ``group`` at ``value`` if given."""
    picked = {g: values[0] for g, values in choices.items()}
    if value is not None:
        picked[group] = value
    return compose_once(tuple(f"{g}={v}" for g, v in sorted(picked.items())))


@functools.cache
def compose_once(overrides: tuple[str, ...]):
    from dropbench.build import compose_config  # Hydra's compose API: only when a key needs checking

    return compose_config(list(overrides))


_MISSING = object()
