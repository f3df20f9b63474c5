"""What a run leaves on disk: TensorBoard scalars and ``metrics.json``, both named ``split/metric``."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from dropbench import __version__
from dropbench.atomic import FULL
from dropbench.data import DataSplits
from dropbench.train import FitResult


def run_record(
    status: str,
    essentials: dict[str, Any],
    resolved: dict[str, Any],
    history: list[dict[str, float]],
    device: str,
    **details: Any,
) -> dict[str, Any]:
    """The ``metrics.json`` payload every run writes, whatever its status.

    ``status`` is ``finished``, ``diverged`` or ``interrupted``; ``essentials`` the settings a
    table groups by (dataset, model, reg, p, wd, seed, ...); ``resolved`` the whole config;
    ``details`` the status's own entries (``final``, ``best``, ``diverged``, ...).
    """
    return {
        "status": status,
        "config": essentials,
        "resolved_config": resolved,
        "seed": essentials.get("seed"),
        "version": __version__,
        "git_commit": git_commit(Path(__file__).parent),
        "torch": torch.__version__,
        "device": device,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "history": history,
        **details,
    }


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def git_commit(package: Path) -> str | None:
    """The commit of dropbench's own checkout (``-dirty`` if it has changes), or None.

    None too when ``package`` is installed inside some other repository (a venv in a
    user's project): that repository's commit says nothing about dropbench's code.
    """
    try:
        top = Path(git(package, "rev-parse", "--show-toplevel"))
        if top.resolve() != package.resolve().parent:
            return None
        commit = git(package, "rev-parse", "HEAD")
        dirty = git(package, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def quiet_writer_thread_full_disk(args: threading.ExceptHookArgs, default=threading.excepthook) -> None:
    """Python's report of a thread's exception, but none for TensorBoard's writer thread failing
    on a full disk: TensorBoard raises that error again in the run's own thread, at its next
    write, where dropbench says it in one line; the thread's traceback would only repeat it."""
    full = isinstance(args.exc_value, OSError) and args.exc_value.errno in FULL
    if not (full and type(args.thread).__name__ == "_AsyncWriterThread"):
        default(args)


threading.excepthook = quiet_writer_thread_full_disk


class ScalarLog:
    """TensorBoard event files in the run folder; scalar tags are the ``split/metric`` names."""

    def __init__(self, run_dir: Path, resumed_after: int = 0) -> None:
        # After a resume, TensorBoard drops the earlier event files' points from the resumed
        # epoch on (purge_step), so an epoch logged before a kill does not show twice.
        purge = resumed_after + 1 if resumed_after else None
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            if "/" in name:  # bookkeeping such as "epoch" is not a metric
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_hparams(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        """TensorBoard's HParams summary, in this run's own event file.

        ``SummaryWriter.add_hparams`` would write to a new timestamped subfolder, which the
        HParams tab shows as a separate run without this run's curves; writing the summary
        through this run's writer keeps settings, curves and final metrics in one run.
        """
        # None (p of reg=none, no max_norm) has no HParams type: such settings are left out;
        # lists (model.hidden) are shown as text
        given = {k: v for k, v in settings.items() if v is not None}
        plain = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in given.items()}
        for summary in hparams(plain, metrics):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """A (3, H, W) image in [0, 1], such as the first layer's weight map."""
        self.writer.add_image(tag, image, step)
        self.writer.flush()

    def log_histograms(self, scores: dict[str, torch.Tensor], step: int) -> None:
        """The distribution of each per-example score (``test_mc/mi``: every test example's MI),
        tagged ``test_mc/mi_per_example``: a tag that is also a scalar's (the mean, ``test_mc/mi``)
        makes TensorBoard's HParams tab fail."""
        for name, values in scores.items():
            self.writer.add_histogram(f"{name}_per_example", values.double().cpu().numpy(), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def data_summary(data: DataSplits) -> dict[str, Any]:
    summary = {
        "origin": data.origin,
        "shape": list(data.shape),
        "classes": data.num_classes,
        "train": len(data.train_y),
        "val": len(data.val_y),
        "test": len(data.test_y),
    }
    if data.ood is not None:  # eval.ood's images: the positives of the ood/* metrics
        summary["ood"] = {"dataset": data.ood.name, "test": len(data.ood.x), "origin": data.ood.origin}
    return summary


def finished_details(result: FitResult, wall_time_s: float, headline: str) -> dict[str, Any]:
    """What a finished run adds to its record: best epoch (with its validation loss and the
    task's ``headline`` metric), final metrics, speed, and a classifier's ``reliability`` bins
    per test split (``{"test": {"count": [...], "accuracy": [...], "confidence": [...]}}``:
    equal-width confidence bins on [0, 1], as ECE's; an empty bin's means are null) and, with MC
    dropout over T > 1 passes, its ``mc_curve`` (``{"t": [1, 2, 3, 5, 10, ..., T],
    "test_mc/acc": [...], "test_mc/nll": [...], "test_mc/ece": [...]}``: the average of the first
    t of the same T passes; its last point is ``final``'s ``test_mc/*``) and, when early stopping
    ended the run, ``early_stop`` (``{"epoch": last epoch trained, "best_epoch", "patience"}``)."""
    best = result.history[result.best_epoch - 1]
    chosen = f"val/{headline}"
    reliability = {"reliability": result.tested.reliability} if result.tested.reliability else {}
    curve = {"mc_curve": result.tested.mc_curve} if result.tested.mc_curve else {}
    stopped = {"early_stop": result.early_stop} if result.early_stop else {}
    return {
        "best": {"epoch": result.best_epoch, "val/loss": best["val/loss"], chosen: best[chosen]},
        "final": {
            **{k: v for k, v in result.history[-1].items() if k.startswith("train/")},
            **{k: v for k, v in best.items() if k.startswith("val/")},
            **result.final,
        },
        "wall_time_s": wall_time_s,
        "train_samples_per_s": result.train_samples / result.train_seconds,
        **reliability,
        **curve,
        **stopped,
    }
