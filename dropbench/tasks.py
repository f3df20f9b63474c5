"""What a model is trained for: its loss, its ``split/metric`` names, and how its best epoch is chosen.

A model declares its task (``model.task``; classifiers have none and are classified). The
training loop, the record and the report ask the task, never assume a classifier:

- :class:`Classification`: cross-entropy on logits; metrics ``loss``, ``acc``, ``nll``, ``ece``;
  the best epoch has the highest ``val/acc`` (ties: lower ``val/loss``); MC dropout averages
  softmax outputs.
- :class:`Reconstruction`: the model returns one logit per input value, its reconstruction is
  their sigmoid, and the target is the input image in pixel units [0, 1] (the model reads the
  normalised image); loss ``bce`` (binary cross-entropy, the usual autoencoder loss on [0, 1]
  pixels) or ``mse``; metrics ``loss`` and ``mse`` (per pixel); the best epoch has the lowest
  ``val/loss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from dropbench.data import DataSplits, iterate_batches
from dropbench.metrics import prediction_metrics

#: One epoch's metrics, named ``split/metric`` (``train/loss``, ``val/acc``, ...).
Metrics = dict[str, float]


def stochastic_layers(model: nn.Module) -> list[nn.Module]:
    """The regularizer layers that draw random masks (they mark themselves ``stochastic = True``)."""
    return [m for m in model.modules() if getattr(m, "stochastic", False)]


class Classification:
    """Class labels from logits (N, classes)."""

    name = "classification"
    metrics = ("loss", "acc", "nll", "ece")
    headline = "acc"  # what a log line and a table lead with
    supports_mc = True

    def bind(self, data: DataSplits) -> Classification:
        return self

    def step(self, output: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor):
        """The batch's mean loss and the sum of its running metric (correct predictions)."""
        return F.cross_entropy(output, targets), (output.argmax(dim=1) == targets).sum()

    def running(self, loss_sum: float, hits: float, n: int) -> Metrics:
        return {"train/loss": loss_sum / n, "train/acc": hits / n}

    def selection_key(self, row: Metrics) -> tuple[float, ...]:
        """Larger is better: validation accuracy, then lower validation loss."""
        return (row["val/acc"], -row["val/loss"])

    def objective(self, best: Metrics) -> float:
        """A sweeper's objective (maximised) from a record's ``best`` entry."""
        return best.get("val/acc", math.nan)

    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        split: str,
        samples: int = 1,
    ) -> Metrics:
        """``{split}/loss``, ``/acc``, ``/nll`` and ``/ece``; see :mod:`dropbench.metrics`."""
        return prediction_metrics(predict_log_probs(model, x, batch_size, samples), y, split)


@torch.inference_mode()
def predict_log_probs(model: nn.Module, x: torch.Tensor, batch_size: int, samples: int = 1) -> torch.Tensor:
    """(N, classes) log-probabilities of ``model`` in eval mode.

    ``samples`` > 1 is MC dropout (Gal & Ghahramani 2016): the stochastic regularizer layers
    stay in training mode and the softmax outputs of ``samples`` passes are averaged (in log
    space, with logaddexp, so that tiny probabilities keep their precision).
    """
    model.eval()
    for layer in stochastic_layers(model) if samples > 1 else []:
        layer.train()
    outputs = []
    for start in range(0, len(x), batch_size):
        inputs = x[start : start + batch_size]
        summed = model(inputs).log_softmax(dim=1)
        for _ in range(samples - 1):
            summed = torch.logaddexp(summed, model(inputs).log_softmax(dim=1))
        outputs.append(summed - math.log(samples))
    model.eval()
    return torch.cat(outputs)


RECONSTRUCTION_LOSSES = ("bce", "mse")


@dataclass(frozen=True)
class Reconstruction:
    """The input image from logits of its shape; see the module docstring."""

    loss_name: str = "bce"
    mean: torch.Tensor | None = None  # (C, 1, 1): the normalisation, undone to get pixel targets
    std: torch.Tensor | None = None

    name = "reconstruction"
    metrics = ("loss", "mse")
    headline = "mse"
    supports_mc = False

    def __post_init__(self) -> None:
        if self.loss_name not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"model.loss={self.loss_name!r} is not a reconstruction loss; valid: bce, mse")

    def bind(self, data: DataSplits) -> Reconstruction:
        """This task with the data's normalisation, on its device."""
        device = data.train_x.device
        mean = torch.tensor(data.mean, device=device).view(-1, 1, 1)
        std = torch.tensor(data.std, device=device).view(-1, 1, 1)
        return replace(self, mean=mean, std=std)

    def pixels(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised (N, C, H, W) images back in [0, 1]."""
        return (inputs * self.std + self.mean).clamp(0.0, 1.0)

    def step(self, output: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor):
        """The batch's mean loss per pixel, and its summed per-image MSE (whose mean over
        examples is the per-pixel MSE)."""
        target = self.pixels(inputs).view_as(output)
        squared = F.mse_loss(output.detach().sigmoid(), target, reduction="none")
        mse = squared.flatten(1).mean(1).sum()
        if self.loss_name == "bce":
            return F.binary_cross_entropy_with_logits(output, target), mse
        return F.mse_loss(output.sigmoid(), target), mse

    def running(self, loss_sum: float, hits: float, n: int) -> Metrics:
        return {"train/loss": loss_sum / n, "train/mse": hits / n}

    def selection_key(self, row: Metrics) -> tuple[float, ...]:
        return (-row["val/loss"],)

    def objective(self, best: Metrics) -> float:
        return -best.get("val/loss", math.nan)

    @torch.inference_mode()
    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        split: str,
        samples: int = 1,
    ) -> Metrics:
        """Per-pixel mean ``{split}/loss`` and ``{split}/mse`` of the reconstructions, eval mode."""
        model.eval()
        loss_sum, mse_sum = 0.0, 0.0
        for inputs, targets in iterate_batches(x, y, batch_size):
            loss, mse = self.step(model(inputs), inputs, targets)
            loss_sum += float(loss) * len(inputs)
            mse_sum += float(mse)
        return {f"{split}/loss": loss_sum / len(x), f"{split}/mse": mse_sum / len(x)}

    @torch.inference_mode()
    def reconstruct(self, model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(originals, reconstructions) in pixel units, both (N, C, H, W), eval mode."""
        model.eval()
        return self.pixels(inputs), model(inputs).sigmoid().view_as(inputs)


Task = Classification | Reconstruction
#: Every task by the name a record stores (``metrics.json`` ``task``).
TASKS: dict[str, type] = {task.name: task for task in (Classification, Reconstruction)}


def recorded_task(record: dict) -> Task:
    """The task of a run's record; records from before tasks are classifications."""
    return TASKS.get(record.get("task", Classification.name), Classification)()


def task_of(model: nn.Module) -> Task:
    """The task a model declares (``model.task``); a model that declares none is a classifier."""
    return getattr(model, "task", None) or Classification()
