"""Runs that survive: skip finished runs, resume interrupted ones, never run one twice at once.

A run folder's path names its configuration (see ``hydra.run.dir``), so running the same
command again lands in the same folder. What it finds there decides what happens:

- ``metrics.json`` with status finished or diverged: the result exists; the run is skipped.
- ``checkpoint.pt``: training stopped after some epoch; it resumes from there, restoring the
  model, optimizer, schedule and every random-number generator, so it ends exactly as an
  uninterrupted run would.
- neither: a fresh start.

Either way the stored configuration must equal the current one (up to settings that do not
change what a run computes); a different one is an error, never a silent mix.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from dropbench.atomic import torch_save_atomic
from dropbench.errors import ConfigError
from dropbench.rundir import RunDir
from dropbench.schema import config_conflict
from dropbench.train import FitState, Training

DONE_STATUSES = ("finished", "diverged")  # re-running these would only repeat them


def check_same_config(
    run_dir: Path, what: str, stored: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any] | None
) -> None:
    """A ConfigError unless ``stored`` and ``current`` agree (``defaults``: see :func:`config_conflict`)."""
    conflict = config_conflict(stored, current, defaults)
    if conflict:
        raise ConfigError(
            f"{run_dir} holds a {what} with another config ({conflict}); "
            "force=true replaces it, or choose another name= or results_dir="
        )


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every random-number generator a run draws from: data order, augmentation and masks."""
    states = {"data": generator.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(states["data"])
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, config: dict[str, Any], state: FitState, training: Training) -> None:
    """Everything needed to continue after ``state.epoch`` as if training had never stopped."""
    payload = {
        "config": config,
        "state": vars(state),
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "rng": rng_states(training.generator),
        # CPU reductions split work by thread: another thread count changes the last bits
        "threads": torch.get_num_threads(),
    }
    torch_save_atomic(payload, path)


def load_checkpoint(
    path: Path, config: dict[str, Any], training: Training, defaults: dict[str, Any] | None = None
) -> FitState:
    """Restore what :func:`save_checkpoint` saved into freshly built objects; returns the fit state."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have no common base class
        raise ConfigError(
            f"{path} cannot be read ({type(error).__name__}); force=true starts this run over"
        ) from None
    check_same_config(path.parent, "checkpoint", payload["config"], config, defaults)
    training.model.load_state_dict(payload["model"])
    training.optimizer.load_state_dict(payload["optimizer"])
    training.scheduler.load_state_dict(payload["scheduler"])
    restore_rng_states(payload["rng"], training.generator)
    threads = payload.get("threads")
    if threads is not None and threads != torch.get_num_threads():
        print(
            f"dropbench: {path.parent}: resuming with {torch.get_num_threads()} threads after {threads}: "
            "the result may differ from an uninterrupted run in the last bits (about 1e-7)",
            file=sys.stderr,
        )
    return FitState(**payload["state"])


class RunLock:
    """An exclusive lock on a run folder, so two processes of a sweep never train the same run.

    Two jobs can share a folder when a sweep repeats a run (``reg=none`` at several p) and a
    parallel launcher starts both at once. The lock is the kernel's (``flock``): it vanishes
    with the process that held it, so a crash never leaves a stale lock behind.
    """

    def __init__(self, run_dir: RunDir) -> None:
        self.path = run_dir.lock
        self.handle = None

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if another process does."""
        import fcntl  # POSIX only; imported here so the module still loads elsewhere

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a")  # noqa: SIM115 (held open while the lock is held)
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            return False
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file drops the lock
            self.handle = None
