"""Threads per run: how many CPU cores a run may use when a parallel launcher runs several."""

from __future__ import annotations

import os

from dropbench.errors import ConfigError


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
