"""Check the top-level knobs of a run and turn them into plain, typed values."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from dropbench.errors import ConfigError
from dropbench.regularizers import check_drop_probability


@dataclass(frozen=True)
class Knobs:
    """The top-level options of ``configs/config.yaml``, validated."""

    p: float
    wd: float
    seed: int
    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    device: torch.device
    threads: int | None
    mc_samples: int | None
    max_norm: float | None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} is invalid; {name} must be a whole number >= {minimum}")
    return value


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} is invalid; {name} must be a number {bound}")
    return float(value)


def resolve_device(name: Any) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise a torch device string that must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; valid: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not supported; valid: auto, cpu, cuda, cuda:N")
    return device


def check_knobs(values: dict[str, Any]) -> Knobs:
    """Validate the top-level options; the first bad one raises a one-line ConfigError."""
    try:
        p = check_drop_probability(values["p"])
    except ValueError as error:
        raise ConfigError(str(error)) from None
    threads = values.get("threads")
    mc_samples = values.get("eval", {}).get("mc_samples")
    max_norm = values.get("max_norm")
    return Knobs(
        p=p,
        wd=_positive("wd", values["wd"], allow_zero=True),
        seed=_whole("seed", values["seed"], 0),
        epochs=_whole("epochs", values["epochs"], 1),
        batch_size=_whole("batch_size", values["batch_size"], 1),
        eval_batch_size=_whole("eval_batch_size", values["eval_batch_size"], 1),
        lr=_positive("lr", values["lr"]),
        device=resolve_device(values["device"]),
        threads=None if threads is None else _whole("threads", threads, 1),
        mc_samples=None if mc_samples is None else _whole("eval.mc_samples", mc_samples, 1),
        max_norm=None if max_norm is None else _positive("max_norm", max_norm),
    )


def check_force(value: Any) -> bool:
    """``force`` must be a boolean: a typo such as force=ture must not re-run (and replace) results."""
    if not isinstance(value, bool):
        raise ConfigError(f"force={value!r} is invalid; valid: true, false")
    return value


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(n_jobs: int | None, cores: int | None = None) -> int | None:
    """Torch threads per run when ``n_jobs`` runs share ``cores``, so processes x threads <= cores.

    ``n_jobs`` follows joblib: -1 means one process per core, -n means cores + 1 - n processes.
    None (no parallel launcher) returns None: torch keeps its default, one thread per core.
    """
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ConfigError(
            f"hydra.launcher.n_jobs={n_jobs!r} is invalid; use a whole number >= 1, or -1 for all cores"
        )
    cores = available_cores() if cores is None else cores
    workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // workers)
