"""The Hydra task behind ``dropbench run``: the only code that reads a DictConfig.

It validates the config, instantiates data, regularizer, model and optimizer from their
config groups (yaml ``_target_`` is the registry), trains, and writes the run's record.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dropbench import __version__
from dropbench.errors import ConfigError, DropbenchError
from dropbench.record import METRICS_FILE, ScalarLog, git_commit, write_json_atomic
from dropbench.regularizers import l2_parameter_groups
from dropbench.settings import Knobs, check_knobs
from dropbench.train import fit

#: What Hydra writes into a run folder before the task starts; a folder holding only these
#: is ours to remove when the run fails before training.
HYDRA_FILES = {".hydra", "dropbench.log"}


def build(group: str, node: Any, **kwargs: Any) -> Any:
    """Instantiate one config group's ``_target_``; a bad value there becomes a one-line ConfigError."""
    try:
        return instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, DropbenchError):
            raise cause from None
        raise ConfigError(f"{group}: {cause}") from None


def make_optimizer(cfg: DictConfig, model: torch.nn.Module, knobs: Knobs) -> torch.optim.Optimizer:
    """The optimizer group's class over L2 parameter groups (weights decay by wd, biases do not)."""
    try:
        groups = l2_parameter_groups(model, knobs.wd)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return build("optimizer", cfg.optimizer)(groups, lr=knobs.lr)


def describe(cfg: DictConfig, knobs: Knobs, choices: dict[str, str]) -> dict[str, Any]:
    """The essentials a table needs to place this run, plus the whole resolved config."""
    essentials = {group: choices.get(group) for group in ("dataset", "model", "reg", "optimizer")}
    essentials.update(
        p=knobs.p, wd=knobs.wd, seed=knobs.seed, epochs=knobs.epochs, batch_size=knobs.batch_size, lr=knobs.lr
    )
    return {"config": essentials, "resolved_config": OmegaConf.to_container(cfg, resolve=True)}


def train_run(cfg: DictConfig, run_dir: Path, choices: dict[str, str]) -> dict[str, Any]:
    """Validate, build, train and record one run; returns the ``metrics.json`` payload."""
    knobs = check_knobs(OmegaConf.to_container(cfg, resolve=True))
    if knobs.threads:
        torch.set_num_threads(knobs.threads)
    started = time.perf_counter()
    data = build("dataset", cfg.dataset, device=knobs.device)
    torch.manual_seed(knobs.seed)
    drop = build("reg", cfg.reg.drop) if cfg.reg.get("drop") is not None else None
    model = build("model", cfg.model, in_shape=data.shape, num_classes=data.num_classes, drop=drop)
    model = model.to(knobs.device)
    optimizer = make_optimizer(cfg, model, knobs)
    generator = torch.Generator(device=knobs.device).manual_seed(knobs.seed)
    scalars = ScalarLog(run_dir)
    try:
        result = fit(
            model,
            optimizer,
            data,
            knobs.epochs,
            knobs.batch_size,
            knobs.eval_batch_size,
            generator,
            on_epoch=lambda row: scalars.log(row, int(row["epoch"])),
            progress=sys.stderr.isatty(),
        )
        scalars.log(result.final, knobs.epochs)
    finally:
        scalars.close()
    best = result.history[result.best_epoch - 1]
    return {
        "status": "finished",
        **describe(cfg, knobs, choices),
        "seed": knobs.seed,
        "version": __version__,
        "git_commit": git_commit(Path(__file__).parent),
        "torch": torch.__version__,
        "device": str(knobs.device),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "origin": data.origin,
            "shape": list(data.shape),
            "classes": data.num_classes,
            "train": len(data.train_y),
            "val": len(data.val_y),
            "test": len(data.test_y),
        },
        "history": result.history,
        "best": {"epoch": result.best_epoch, "val/loss": best["val/loss"], "val/acc": best["val/acc"]},
        "final": {
            **{k: v for k, v in result.history[-1].items() if k.startswith("train/")},
            **{k: v for k, v in best.items() if k.startswith("val/")},
            **result.final,
        },
        "wall_time_s": time.perf_counter() - started,
        "train_samples_per_s": result.train_samples / result.train_seconds,
    }


def remove_if_untouched(run_dir: Path) -> None:
    """Remove a run folder that holds only what Hydra wrote before the task (nothing of a run)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= HYDRA_FILES:
        shutil.rmtree(run_dir, ignore_errors=True)


def task(cfg: DictConfig) -> None:
    """Hydra's task function: one run. Errors the user can fix end the process with one line."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        record = train_run(cfg, run_dir, dict(hydra_cfg.runtime.choices))
    except DropbenchError as error:
        remove_if_untouched(run_dir)
        print(f"dropbench: error: {error}", file=sys.stderr)
        sys.exit(2)
    write_json_atomic(run_dir / METRICS_FILE, record)
    final = record["final"]
    print(
        f"{run_dir}: test/acc {final['test/acc']:.4f} (best epoch {record['best']['epoch']}), "
        f"test_last/acc {final['test_last/acc']:.4f}, {record['train_samples_per_s']:.0f} samples/s"
    )
