"""The Hydra task behind ``dropbench run``: the only code that reads a DictConfig.

It validates the config, instantiates data, regularizer, model, optimizer and schedule from
their config groups (yaml ``_target_`` is the registry), trains, and writes the run's record.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dropbench.data import DataSplits
from dropbench.errors import ConfigError, DropbenchError
from dropbench.record import (
    METRICS_FILE,
    ScalarLog,
    data_summary,
    finished_details,
    run_record,
    run_settings,
    write_json_atomic,
)
from dropbench.regularizers import apply_max_norm, check_combination, hidden_weights, l2_parameter_groups
from dropbench.report.weightmap import first_layer_weight, weight_grid
from dropbench.resume import (
    CHECKPOINT_FILE,
    DONE_STATUSES,
    WEIGHTS_FILE,
    RunLock,
    atomic_torch_save,
    check_same_config,
    clear_run,
    load_checkpoint,
    result_defining,
    save_checkpoint,
)
from dropbench.schedules import per_step
from dropbench.settings import Knobs, check_force, check_knobs, default_threads
from dropbench.train import FitResult, FitState, Metrics, fit, stochastic_layers

#: What Hydra writes into a run folder before the task starts; a folder holding only these
#: is ours to remove when the run fails before training.
HYDRA_FILES = {".hydra", "dropbench.log", ".lock"}
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


class Run:
    """One run's folder, settings and lifecycle: skip, resume, train, record."""

    def __init__(self, cfg: DictConfig, run_dir: Path, choices: dict[str, str], n_jobs: int | None) -> None:
        self.cfg, self.run_dir, self.choices = cfg, run_dir, choices
        self.resolved = OmegaConf.to_container(cfg, resolve=True)
        self.knobs = check_knobs(self.resolved)
        check_combination(choices["model"], choices["reg"])
        self.uses_p = bool(cfg.reg.uses_p)  # false for none and l2: p then names nothing about the run
        self.settings = run_settings(self.knobs, choices, self.uses_p)
        self.defining = result_defining(self.resolved, self.uses_p)
        self.threads = self.knobs.threads or default_threads(n_jobs)
        self.force = check_force(self.resolved.get("force", False))

    def record(self, status: str, history: list[Metrics], **details: Any) -> dict[str, Any]:
        return run_record(status, self.settings, self.resolved, history, str(self.knobs.device), **details)

    def earlier_result(self) -> dict[str, Any] | None:
        """A finished (or diverged) record of this very run already in the folder, if any."""
        path = self.run_dir / METRICS_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise ConfigError(f"{path} is unreadable; force=true re-runs this run") from None
        if record.get("status") not in DONE_STATUSES:
            return None  # an interrupted run: resume from its checkpoint
        stored = result_defining(record.get("resolved_config", {}), self.uses_p)
        check_same_config(self.run_dir, f"{record['status']} run", stored, self.defining)
        return record

    def train(self, data: DataSplits) -> FitResult:
        """Build, resume if a checkpoint exists, train with per-epoch checkpoints and logging."""
        knobs = self.knobs
        model, optimizer, scheduler = build_training(self.cfg, knobs, data)
        OmegaConf.save(self.cfg, self.run_dir / RESOLVED_CONFIG, resolve=True)
        generator = torch.Generator(device=knobs.device).manual_seed(knobs.seed)  # shuffling, augmentation
        checkpoint = self.run_dir / CHECKPOINT_FILE
        parts = (model, optimizer, scheduler, generator)
        self.state = FitState()
        if checkpoint.is_file():
            self.state = load_checkpoint(checkpoint, self.defining, *parts)
            log.info("resuming %s after epoch %d of %d", self.run_dir, self.state.epoch, knobs.epochs)
        scalars = ScalarLog(self.run_dir)

        def on_epoch(row: Metrics) -> None:
            scalars.log(row, int(row["epoch"]))
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if "/" in k)
            log.info("epoch %d/%d: %s (%.1f s)", row["epoch"], knobs.epochs, metrics, row["epoch_time_s"])

        steps = math.ceil(len(data.train_y) / knobs.batch_size)
        log.info("training: %d epochs x %d steps", knobs.epochs, steps)
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
                state=self.state,
                on_checkpoint=lambda state: save_checkpoint(checkpoint, self.defining, state, *parts),
            )
            if result.diverged is None:
                self.log_summaries(scalars, model, result, data.shape)
        finally:
            scalars.close()
        return result

    def log_summaries(self, scalars: ScalarLog, model: nn.Module, result: FitResult, shape) -> None:
        """Final metrics, the HParams summary and the first layer's weight map, for TensorBoard."""
        scalars.log(result.final, self.knobs.epochs)
        best = result.history[result.best_epoch - 1]
        metrics = {k: v for k, v in {**best, **result.final}.items() if k.startswith(("val/", "test"))}
        scalars.log_hparams(self.settings, metrics)
        weight = first_layer_weight(model.state_dict(), shape)
        if weight is not None:
            scalars.log_image("weights/first_layer", weight_grid(weight, shape), self.knobs.epochs)

    def execute(self) -> float:
        """Skip, resume or train; write the record. Returns the best validation accuracy."""
        earlier = None if self.force else self.earlier_result()
        if earlier is not None:
            note = "" if self.uses_p else f" (reg={self.choices['reg']} ignores p: one run serves every p)"
            print(f"dropbench: skip {self.run_dir}: {earlier['status']} already{note}; force=true re-runs it")
            return earlier.get("best", {}).get("val/acc", math.nan)
        if self.force:
            clear_run(self.run_dir)
        if self.threads:
            torch.set_num_threads(self.threads)
        started = time.perf_counter()
        data = build("dataset", self.cfg.dataset, device=self.knobs.device)
        log.info(
            "%s: %d train / %d val / %d test examples from %s",
            self.choices.get("dataset"),
            len(data.train_y),
            len(data.val_y),
            len(data.test_y),
            data.origin,
        )
        try:
            result = self.train(data)
        except KeyboardInterrupt:
            self.write_interrupted()
            raise
        summary = {"data": data_summary(data)}
        if result.diverged is not None:
            record = self.record("diverged", result.history, diverged=result.diverged, final={}, **summary)
            write_json_atomic(self.run_dir / METRICS_FILE, record)
            (self.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
            d = result.diverged
            print(
                f"dropbench: {self.run_dir}: diverged at epoch {d['epoch']} ({d['metric']} is not finite); "
                "recorded as diverged"
            )
            return math.nan
        atomic_torch_save(result.best_state, self.run_dir / WEIGHTS_FILE)
        details = finished_details(result, time.perf_counter() - started)
        write_json_atomic(
            self.run_dir / METRICS_FILE, self.record("finished", result.history, **summary, **details)
        )
        (self.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # the result supersedes it
        final = details["final"]
        log.info(
            "%s: test/acc %.4f (best epoch %d), test_last/acc %.4f, %.0f samples/s",
            self.run_dir,
            final["test/acc"],
            result.best_epoch,
            final["test_last/acc"],
            details["train_samples_per_s"],
        )
        return details["best"]["val/acc"]

    def write_interrupted(self) -> None:
        """On Ctrl-C: record how far the run came; its last checkpoint stays for resuming."""
        state = getattr(self, "state", None)
        done = state.epoch if state is not None else 0
        if done:
            write_json_atomic(
                self.run_dir / METRICS_FILE, self.record("interrupted", state.history, final={})
            )
        print(
            f"dropbench: interrupted {self.run_dir} after {done} of {self.knobs.epochs} epochs; "
            "run the same command again to resume",
            file=sys.stderr,
        )


def remove_if_untouched(run_dir: Path) -> None:
    """Remove a run folder that holds only what Hydra wrote before the task (nothing of a run)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= HYDRA_FILES:
        shutil.rmtree(run_dir, ignore_errors=True)


def stop_on_sigterm() -> None:
    """Let SIGTERM (a cluster's preemption, ``kill``) stop a run the way Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)


def task(cfg: DictConfig) -> float:
    """Hydra's task function: one run. Returns its best validation accuracy (a sweeper's objective).

    Errors the user can fix end a single run with one line (exit 2); in a sweep they skip
    this run with one line and the sweep goes on.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    lock = RunLock(run_dir)
    try:
        run = Run(cfg, run_dir, dict(hydra_cfg.runtime.choices), hydra_cfg.launcher.get("n_jobs"))
        if not lock.acquire():
            print(f"dropbench: skip {run_dir}: another process is running it")
            return math.nan
        stop_on_sigterm()
        return run.execute()
    except DropbenchError as error:
        remove_if_untouched(run_dir)
        if sweeping:
            print(f"dropbench: skip {run_dir}: {error}", file=sys.stderr)
            return math.nan
        print(f"dropbench: error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        lock.release()
