"""The training loop: plain tensors in, per-epoch metrics out. No Hydra, no files."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dropbench.data import DataSplits, iterate_batches

#: One epoch's metrics, named ``split/metric`` (``train/loss``, ``val/acc``, ...).
Metrics = dict[str, float]


@dataclass
class FitResult:
    history: list[Metrics]  # one row per epoch: epoch, train/*, val/*, epoch_time_s
    best_epoch: int  # the epoch whose weights gave the best validation accuracy
    final: Metrics  # test/* from the best-validation weights, test_last/* from the last ones
    train_seconds: float  # time spent in training steps (evaluation excluded)
    train_samples: int  # training examples processed over all epochs
    best_state: dict = field(repr=False, default_factory=dict)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DataSplits,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = False,
) -> Metrics:
    """One pass over the shuffled training split. Returns running ``train/loss`` and ``train/acc``.

    ``scheduler``, if given, is stepped after every optimizer step.

    The running metrics are measured in training mode (regularizer on, augmented batches),
    averaged over examples. Sums stay on the device so the loop never waits on a ``.item()``.
    """
    model.train()
    loss_sum = torch.zeros((), device=data.train_x.device)
    correct = torch.zeros((), device=data.train_x.device, dtype=torch.long)
    batches = iterate_batches(data.train_x, data.train_y, batch_size, generator, data.augment)
    total = -(-len(data.train_y) // batch_size)
    for inputs, targets in tqdm(batches, total=total, desc="train", leave=False, disable=not progress):
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(targets)
        correct += (logits.argmax(dim=1) == targets).sum()
    n = len(data.train_y)
    return {"train/loss": loss_sum.item() / n, "train/acc": correct.item() / n}


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, split: str) -> Metrics:
    """Mean cross-entropy and accuracy of ``model`` in eval mode, as ``{split}/loss`` and ``{split}/acc``."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for inputs, targets in iterate_batches(x, y, batch_size):
        logits = model(inputs)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        correct += (logits.argmax(dim=1) == targets).sum()
    return {f"{split}/loss": loss_sum.item() / len(y), f"{split}/acc": correct.item() / len(y)}


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DataSplits,
    epochs: int,
    batch_size: int,
    eval_batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_epoch: Callable[[Metrics], None] = lambda row: None,
    progress: bool = False,
) -> FitResult:
    """Train for ``epochs``, validating after each; test the best-validation and the last weights.

    Model selection uses validation accuracy (ties go to the lower validation loss), never
    the test split. ``on_epoch`` receives each epoch's row as soon as it exists (for logging).
    """
    history: list[Metrics] = []
    best_key, best_epoch, best_state = None, 0, {}
    train_seconds = 0.0
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress):
        start = time.perf_counter()
        row: Metrics = {
            "epoch": epoch,
            **train_epoch(model, optimizer, data, batch_size, generator, scheduler, progress),
        }
        row["epoch_time_s"] = time.perf_counter() - start
        train_seconds += row["epoch_time_s"]
        row.update(evaluate(model, data.val_x, data.val_y, eval_batch_size, "val"))
        history.append(row)
        on_epoch(row)
        key = (row["val/acc"], -row["val/loss"])
        if best_key is None or key > best_key:
            best_key, best_epoch, best_state = key, epoch, copy.deepcopy(model.state_dict())
    final = {
        f"test_last/{k.split('/')[1]}": v
        for k, v in evaluate(model, data.test_x, data.test_y, eval_batch_size, "test").items()
    }
    model.load_state_dict(best_state)
    final.update(evaluate(model, data.test_x, data.test_y, eval_batch_size, "test"))
    return FitResult(history, best_epoch, final, train_seconds, epochs * len(data.train_y), best_state)
