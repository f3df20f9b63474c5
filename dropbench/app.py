"""The Hydra task behind ``dropbench run``: the only code that reads a DictConfig.

It validates the config, instantiates data, regularizer, model, optimizer and schedule from
their config groups (yaml ``_target_`` is the registry), trains, and writes the run's record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra.core.utils
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dropbench.atomic import FULL, storage_error, torch_save_atomic, write_json_atomic, write_text_atomic
from dropbench.build import build_training, check_config, load_data
from dropbench.data import DataSplits
from dropbench.errors import ConfigError, DropbenchError, StorageError
from dropbench.record import ScalarLog, data_summary, finished_details, run_record
from dropbench.resume import DONE_STATUSES, RunLock, check_same_config, load_checkpoint, save_checkpoint
from dropbench.rundir import RunDir
from dropbench.schema import declared_defaults, reg_settings, result_defining, run_settings, setup_settings
from dropbench.settings import default_threads
from dropbench.stop import STOP, busy_with
from dropbench.sweep import decline
from dropbench.tasks import Reconstruction, recorded_task
from dropbench.train import FitOptions, FitResult, FitState, Metrics, Training, fit
from dropbench.weightmap import first_layer_weight, reconstruction_grid, weight_grid

log = logging.getLogger("dropbench")
#: Set by ``dropbench run`` (and inherited by a launcher's workers): when the command started.
COMMAND_STARTED = "DROPBENCH_COMMAND_STARTED"
#: Test images shown beside their reconstructions in TensorBoard (the first ones: the same in every run)
RECONSTRUCTED_IMAGES = 16


class RunLifecycle:
    """One run's folder, settings and lifecycle: skip, resume, train, record."""

    def __init__(self, cfg: DictConfig, run_dir: RunDir, choices: dict[str, str], n_jobs: int | None) -> None:
        self.cfg, self.run_dir, self.choices = cfg, run_dir, choices
        self.resolved = OmegaConf.to_container(cfg, resolve=True)
        self.knobs = check_config(cfg, choices)
        self.uses_p = bool(cfg.reg.uses_p)  # false for none and l2: p then names nothing about the run
        self.settings = run_settings(self.knobs, choices, self.uses_p)
        self.defining = result_defining(self.resolved, self.uses_p)
        self.threads = self.knobs.threads or default_threads(n_jobs)
        self.force = self.knobs.force

    def defaults(self) -> dict[str, Any]:
        """The declared defaults of this run's groups, for records made before a setting existed."""
        return declared_defaults(self.choices)

    def record(self, status: str, history: list[Metrics], **details: Any) -> dict[str, Any]:
        return run_record(status, self.settings, self.resolved, history, str(self.knobs.device), **details)

    def earlier_result(self) -> dict[str, Any] | None:
        """A finished (or diverged) record of this very run already in the folder, if any."""
        path = self.run_dir.metrics
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise ConfigError(f"{path} is unreadable; force=true re-runs this run") from None
        if record.get("status") not in DONE_STATUSES:
            return None  # an interrupted run: resume from its checkpoint
        stored = result_defining(record.get("resolved_config", {}), self.uses_p)
        check_same_config(
            self.run_dir.path, f"{record['status']} run", stored, self.defining, self.defaults()
        )
        return record

    def made_by_this_command(self) -> dict[str, Any] | None:
        """With force=true: the record of this run if this very command already re-ran it. A
        sweep over p of a reg that ignores p lands in one folder once per p; force must train
        it once, not wipe and retrain it each time."""
        started = os.environ.get(COMMAND_STARTED)
        try:
            record = json.loads(self.run_dir.metrics.read_text())
            finished = datetime.fromisoformat(record["finished_at"]).timestamp()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        done = record.get("status") in DONE_STATUSES
        return record if done and started is not None and finished >= float(started) else None

    def train(self, data: DataSplits) -> FitResult:
        """Build, resume if a checkpoint exists, train with per-epoch checkpoints and logging."""
        knobs, checkpoint = self.knobs, self.run_dir.checkpoint
        STOP.check()  # a stop requested while the data loaded
        training = build_training(self.cfg, knobs, data)
        self.task = training.task
        write_text_atomic(self.run_dir.resolved_config, OmegaConf.to_yaml(self.cfg, resolve=True))
        self.state = FitState()
        if checkpoint.is_file():
            self.state = load_checkpoint(checkpoint, self.defining, training, self.defaults())
            log.info("resuming %s after epoch %d of %d", self.run_dir.path, self.state.epoch, knobs.epochs)
        scalars = ScalarLog(self.run_dir.path, resumed_after=self.state.epoch)

        def on_epoch(row: Metrics) -> None:
            scalars.log(row, int(row["epoch"]))
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if "/" in k)
            log.info("epoch %d/%d: %s (%.1f s)", row["epoch"], knobs.epochs, metrics, row["epoch_time_s"])

        steps = math.ceil(len(data.train_y) / knobs.batch_size)
        log.info("training: %d epochs x %d steps", knobs.epochs, steps)
        options = FitOptions(
            knobs.epochs,
            knobs.batch_size,
            knobs.eval_batch_size,
            knobs.mc_samples,
            knobs.patience,
            progress=sys.stderr.isatty(),
            check_stop=STOP.check,
            on_progress=None if sys.stderr.isatty() else self.log_progress,
        )
        try:
            result = fit(
                training,
                data,
                options,
                state=self.state,
                on_epoch=on_epoch,
                on_checkpoint=lambda state: save_checkpoint(checkpoint, self.defining, state, training),
            )
            if result.diverged is None:
                self.log_summaries(scalars, training, result, data)
        finally:
            scalars.close()
        return result

    def log_progress(self, epoch: int, step: int, steps: int, seconds: float) -> None:
        """A progress line where no bar shows: step, samples/s and the epoch's time left."""
        rate = step * self.knobs.batch_size / seconds
        left = seconds * (steps - step) / step
        log.info(
            "epoch %d/%d: step %d/%d, %.0f samples/s, %.0f s left in this epoch",
            epoch,
            self.knobs.epochs,
            step,
            steps,
            rate,
            left,
        )

    def hparams(self) -> dict[str, Any]:
        """The HParams summary's settings: the record's, the setup groups' and the reg's own."""
        reg = {f"reg.{key}": value for key, value in reg_settings(self.resolved).items()}
        return {**self.settings, **setup_settings(self.resolved), **reg}

    def log_summaries(
        self, scalars: ScalarLog, training: Training, result: FitResult, data: DataSplits
    ) -> None:
        """Final metrics, per-example uncertainty histograms, the HParams summary, the first
        layer's weight map and (for a reconstruction) test images beside their reconstructions,
        for TensorBoard."""
        shape = data.shape
        scalars.log(result.final, self.knobs.epochs)
        scalars.log_histograms(result.tested.scores, self.knobs.epochs)  # test_mc/mi, ood/mi_mc, ...
        best = result.history[result.best_epoch - 1]
        shown = ("val/", "test", "ood/")
        metrics = {k: v for k, v in {**best, **result.final}.items() if k.startswith(shown)}
        scalars.log_hparams(self.hparams(), metrics)
        weight = first_layer_weight(training.model.state_dict(), shape)
        if weight is not None:
            scalars.log_image("weights/first_layer", weight_grid(weight, shape), self.knobs.epochs)
        if isinstance(training.task, Reconstruction):  # the model holds the best-validation weights
            pair = training.task.reconstruct(training.model, data.test_x[:RECONSTRUCTED_IMAGES])
            scalars.log_image("reconstructions/test", reconstruction_grid(*pair), self.knobs.epochs)
            originals, reconstructions = (images.cpu() for images in pair)
            torch_save_atomic(
                {"originals": originals, "reconstructions": reconstructions}, self.run_dir.reconstructions
            )

    def execute(self) -> float:
        """Skip, resume or train; write the record. Returns the task's objective (a classifier's
        best validation accuracy)."""
        for stale in self.run_dir.remove_stale_temporaries():  # under the run's lock
            log.info("removed %s, left by a write that was stopped", stale)
        earlier = self.made_by_this_command() if self.force else self.earlier_result()
        if earlier is not None:
            note = "" if self.uses_p else f" (reg={self.choices['reg']} ignores p: one run serves every p)"
            again = "re-run by this command already" if self.force else "already; force=true re-runs it"
            print(f"dropbench: skip {self.run_dir.path}: {earlier['status']} {again}{note}")
            return recorded_task(earlier).objective(earlier.get("best") or {})
        if self.force:
            self.run_dir.clear_results()
        if self.threads:
            torch.set_num_threads(self.threads)
        started = time.perf_counter()
        data = load_data(self.cfg, self.knobs)
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
        summary = {"task": self.task.name, "data": data_summary(data)}
        if result.diverged is not None:
            record = self.record("diverged", result.history, diverged=result.diverged, final={}, **summary)
            write_json_atomic(self.run_dir.metrics, record)
            self.run_dir.checkpoint.unlink(missing_ok=True)
            d = result.diverged
            print(
                f"dropbench: {self.run_dir.path}: diverged at epoch {d['epoch']} "
                f"({d['metric']} is not finite); "
                "recorded as diverged"
            )
            return math.nan
        torch_save_atomic(result.best_state, self.run_dir.weights)
        task = self.task
        details = finished_details(result, time.perf_counter() - started, task.headline)
        write_json_atomic(self.run_dir.metrics, self.record("finished", result.history, **summary, **details))
        self.run_dir.checkpoint.unlink(missing_ok=True)  # the result supersedes it
        final = details["final"]
        if result.early_stop is not None:
            log.info(
                "stopped early after epoch %d of %d: no better validation epoch than %d in %d epochs",
                result.early_stop["epoch"],
                self.knobs.epochs,
                result.best_epoch,
                result.early_stop["patience"],
            )
        log.info(
            "%s: test/%s %.4f (best epoch %d), test_last/%s %.4f, %.0f samples/s",
            self.run_dir.path,
            task.headline,
            final[f"test/{task.headline}"],
            result.best_epoch,
            task.headline,
            final[f"test_last/{task.headline}"],
            details["train_samples_per_s"],
        )
        detection = {k: v for k, v in final.items() if k.startswith("ood/auroc_")}
        if detection:  # eval.ood: how well each score tells the other dataset's images apart
            log.info("OOD detection AUROC: %s", ", ".join(f"{k} {v:.4f}" for k, v in detection.items()))
        return task.objective(details["best"])

    def write_interrupted(self) -> None:
        """On Ctrl-C: record how far the run came; its last checkpoint stays for resuming."""
        state = getattr(self, "state", None)
        done = state.epoch if state is not None else 0
        if done:
            write_json_atomic(self.run_dir.metrics, self.record("interrupted", state.history, final={}))
        print(
            f"dropbench: interrupted {self.run_dir.path} after {done} of {self.knobs.epochs} epochs; "
            "run the same command again to resume",
            file=sys.stderr,
        )


def stop_on_storage_error(error: StorageError) -> None:
    """End the command with ``error``'s line: on a full disk every later run of a sweep would
    fail alike. What is finished stays (every write is atomic); an interrupted run resumes."""
    print(f"dropbench: error: {error}", file=sys.stderr)
    sys.exit(2)


def save_config_or_stop(cfg: Any, filename: str, output_dir: Path) -> None:
    """Hydra's writer of a job's ``.hydra/*.yaml``, whose errors end the command in one line.

    Hydra writes them before the task starts, where an error (a full disk) would otherwise be
    Hydra's traceback, ending the sweep; this process's runs (a launcher's worker's too) import
    this module before Hydra writes any.
    """
    try:
        hydra_save_config(cfg, filename, output_dir)
    except OSError as error:
        stop_on_storage_error(storage_error(output_dir / filename, error))


hydra_save_config = hydra.core.utils._save_config
hydra.core.utils._save_config = save_config_or_stop


def task(cfg: DictConfig) -> float:
    """Hydra's task function: one run. Returns its best validation accuracy (a sweeper's objective).

    Errors the user can fix end a single run with one line (exit 2); in a sweep they skip
    this run with one line and the sweep goes on.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = RunDir(Path(hydra_cfg.runtime.output_dir))
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    lock = RunLock(run_dir)
    results = Path(os.path.expanduser(str(cfg.results_dir)))
    try:
        STOP.install()  # first: a stop the sweep's command passes on to this worker needs it
        if STOP.signal is not None:  # a worker told to stop takes no further run
            run_dir.remove_if_untouched(results)
            raise KeyboardInterrupt
        run = RunLifecycle(cfg, run_dir, dict(hydra_cfg.runtime.choices), hydra_cfg.launcher.get("n_jobs"))
        if not lock.acquire():
            print(f"dropbench: skip {run_dir.path}: another process is running it")
            decline(run_dir.path, "busy")
            return math.nan
        with busy_with(run_dir.path):
            return run.execute()
    except OSError as error:  # a write: the atomic writer's StorageError, or TensorBoard's own
        if not isinstance(error, StorageError) and error.errno not in FULL:
            raise
        stop_on_storage_error(storage_error(error.filename or run_dir.path, error))
    except DropbenchError as error:
        run_dir.remove_if_untouched(results)
        if sweeping:
            print(f"dropbench: skip {run_dir.path}: {error}", file=sys.stderr)
            decline(run_dir.path, "refused")
            return math.nan
        print(f"dropbench: error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        lock.release()
