"""The Hydra task behind ``dropbench run``: the only code that reads a DictConfig.

It validates the config, instantiates data, regularizer, model, optimizer and schedule from
their config groups (yaml ``_target_`` is the registry), trains, and writes the run's record.
"""

from __future__ import annotations

import inspect
import logging
import math
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dropbench import __version__
from dropbench.data import DataSplits
from dropbench.errors import ConfigError, DropbenchError
from dropbench.record import METRICS_FILE, ScalarLog, git_commit, write_json_atomic
from dropbench.regularizers import apply_max_norm, check_combination, hidden_weights, l2_parameter_groups
from dropbench.schedules import per_step
from dropbench.settings import Knobs, check_knobs
from dropbench.train import FitResult, Metrics, fit, stochastic_layers

#: What Hydra writes into a run folder before the task starts; a folder holding only these
#: is ours to remove when the run fails before training.
HYDRA_FILES = {".hydra", "dropbench.log"}
RESOLVED_CONFIG = "resolved_config.yaml"

log = logging.getLogger("dropbench")


def build(group: str, node: Any, **kwargs: Any) -> Any:
    """Instantiate one config group's ``_target_``; a bad value there becomes a one-line ConfigError."""
    try:
        return instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, DropbenchError):
            raise cause from None
        raise ConfigError(f"{group}: {' '.join(str(cause).split())}") from None


def model_slots(cfg: DictConfig) -> dict[str, Any]:
    """The reg's layer configs for the places this model has (a reg may serve several models:
    DropConnect builds an MLP's linear layers and an LSTM's recurrent ones)."""
    places = inspect.signature(get_class(cfg.model._target_)).parameters
    given = {slot: node for slot, node in cfg.reg.layers.items() if node is not None}
    used = {slot: node for slot, node in given.items() if slot in places}
    if given and not used:  # the model x reg table should have stopped this run: never train unregularized
        raise ConfigError(f"the reg acts on {', '.join(given)}, and the model has none of these places")
    return used


def build_training(cfg: DictConfig, knobs: Knobs, data: DataSplits):
    """Model (with its regularizer), optimizer over L2 parameter groups, and per-step schedule."""
    torch.manual_seed(knobs.seed)  # weight init and regularizer masks
    layers = {slot: build("reg", node) for slot, node in model_slots(cfg).items()}
    model = build("model", cfg.model, in_shape=data.shape, num_classes=data.num_classes, **layers)
    model = model.to(knobs.device)
    if knobs.mc_samples and not stochastic_layers(model):
        raise ConfigError(
            f"eval.mc_samples={knobs.mc_samples} needs a regularizer that draws masks, and this run's "
            "reg draws none; use e.g. reg=dropout, or eval.mc_samples=null"
        )
    optimizer = build("optimizer", cfg.optimizer)(l2_parameter_groups(model, knobs.wd), lr=knobs.lr)
    if knobs.max_norm is not None:  # projected after every step, as in the Dropout paper
        weights = hidden_weights(model)
        optimizer.register_step_post_hook(lambda *_: apply_max_norm(weights, knobs.max_norm))
    total_steps = knobs.epochs * math.ceil(len(data.train_y) / knobs.batch_size)
    scheduler = per_step(optimizer, build("schedule", cfg.schedule), total_steps)
    return model, optimizer, scheduler


def train_logged(cfg: DictConfig, knobs: Knobs, data: DataSplits, run_dir: Path) -> FitResult:
    """Train, streaming each epoch's metrics to TensorBoard and the log as they arrive."""
    model, optimizer, scheduler = build_training(cfg, knobs, data)
    # Everything is valid now: record exactly what runs (Hydra's .hydra/config.yaml keeps ${...})
    OmegaConf.save(cfg, run_dir / RESOLVED_CONFIG, resolve=True)
    generator = torch.Generator(device=knobs.device).manual_seed(knobs.seed)  # shuffling, augmentation
    scalars = ScalarLog(run_dir)

    def on_epoch(row: Metrics) -> None:
        scalars.log(row, int(row["epoch"]))
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if "/" in k)
        log.info("epoch %d/%d: %s (%.1f s)", row["epoch"], knobs.epochs, metrics, row["epoch_time_s"])

    try:
        result = fit(
            model,
            optimizer,
            data,
            knobs.epochs,
            knobs.batch_size,
            knobs.eval_batch_size,
            generator,
            scheduler,
            on_epoch,
            progress=sys.stderr.isatty(),
            mc_samples=knobs.mc_samples,
        )
        scalars.log(result.final, knobs.epochs)
    finally:
        scalars.close()
    return result


def make_record(
    cfg: DictConfig,
    knobs: Knobs,
    choices: dict[str, str],
    data: DataSplits,
    result: FitResult,
    wall_time_s: float,
) -> dict[str, Any]:
    """The ``metrics.json`` payload: what the run was, where it ran, and every number it made."""
    best = result.history[result.best_epoch - 1]
    essentials = {group: choices.get(group) for group in ("dataset", "model", "reg", "optimizer", "schedule")}
    essentials.update(
        p=knobs.p,
        wd=knobs.wd,
        max_norm=knobs.max_norm,
        seed=knobs.seed,
        epochs=knobs.epochs,
        batch_size=knobs.batch_size,
        lr=knobs.lr,
    )
    return {
        "status": "finished",
        "config": essentials,
        "resolved_config": OmegaConf.to_container(cfg, resolve=True),
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
        "wall_time_s": wall_time_s,
        "train_samples_per_s": result.train_samples / result.train_seconds,
    }


def train_run(cfg: DictConfig, run_dir: Path, choices: dict[str, str]) -> dict[str, Any]:
    """Validate, load, train and describe one run; returns the ``metrics.json`` payload."""
    started = time.perf_counter()
    knobs = check_knobs(OmegaConf.to_container(cfg, resolve=True))
    check_combination(choices["model"], choices["reg"])
    if knobs.threads:
        torch.set_num_threads(knobs.threads)
    data = build("dataset", cfg.dataset, device=knobs.device)
    log.info(
        "%s: %d train / %d val / %d test examples from %s",
        choices.get("dataset"),
        len(data.train_y),
        len(data.val_y),
        len(data.test_y),
        data.origin,
    )
    result = train_logged(cfg, knobs, data, run_dir)
    return make_record(cfg, knobs, choices, data, result, time.perf_counter() - started)


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
    log.info(
        "%s: test/acc %.4f (best epoch %d), test_last/acc %.4f, %.0f samples/s",
        run_dir,
        final["test/acc"],
        record["best"]["epoch"],
        final["test_last/acc"],
        record["train_samples_per_s"],
    )
