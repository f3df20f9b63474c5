"""Value checks for settings: each takes (key, value), returns the typed value or raises a
one-line ConfigError naming the key, the bad value and what is valid."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dropbench.errors import ConfigError

#: (dotted key, value) -> the checked value
Check = Callable[[str, Any], Any]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole(minimum: int, maximum: int | None = None) -> Check:
    """A whole number in [minimum, maximum]."""

    def check(key: str, value: Any) -> int:
        bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
        if bad or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise ConfigError(f"{key}={value!r} is invalid; {key} must be a whole number {bound}")
        return value

    return check


def _number(key: str, value: Any, allow_zero: bool) -> float:
    if not is_number(value) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value!r} is invalid; {key} must be a finite number {bound}")
    return float(value)


def positive(key: str, value: Any) -> float:
    return _number(key, value, allow_zero=False)


def non_negative(key: str, value: Any) -> float:
    return _number(key, value, allow_zero=True)


def probability(key: str, value: Any) -> float:
    """A drop probability in [0, 1)."""
    from dropbench.regularizers import check_drop_probability  # the regularizers' own rule

    try:
        return check_drop_probability(value, key)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def rule(validate: Callable[[Any, str], Any]) -> Check:
    """A check from a validator of the code that uses the setting (``validate(value, key)``,
    raising ValueError): the rule stays in one place and still runs before any data loads."""

    def check(key: str, value: Any) -> Any:
        try:
            return validate(value, key)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    return check


def optional(check: Check) -> Check:
    """``check``, or None (null in yaml) for 'off'."""

    def check_optional(key: str, value: Any) -> Any:
        return None if value is None else check(key, value)

    return check_optional


def one_of(choices: Callable[[], Sequence[str]]) -> Check:
    """One of the names ``choices()`` gives (called at check time: the names may be files)."""

    def check(key: str, value: Any) -> str:
        valid = choices()
        if value not in valid:
            raise ConfigError(f"{key}={value!r} is invalid; valid: {', '.join(valid)}")
        return value

    return check


def switch(choices: Callable[[], Sequence[str]]) -> Check:
    """:func:`one_of` for choices that include ``on`` and ``off``, which a yaml file (YAML 1.1)
    reads as true and false: those mean on and off."""
    named = one_of(choices)

    def check(key: str, value: Any) -> str:
        return named(key, ("on" if value else "off") if isinstance(value, bool) else value)

    return check


def boolean(key: str, value: Any) -> bool:
    """A boolean: a typo such as force=ture must not be read as true (or false)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is invalid; valid: true, false")
    return value


def device(key: str, name: Any) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise a torch device string that must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        found = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"{key}={name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name!r} but CUDA is not available here; valid: auto, cpu")
    if found.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}={name!r} is not supported; valid: auto, cpu, cuda, cuda:N")
    return found
