"""What a model is trained for: its loss, its ``split/metric`` names, and how its best epoch is chosen.

A model declares its task (``model.task``; classifiers have none and are classified). The
training loop, the record and the report ask the task, never assume a classifier:

- :class:`Classification`: cross-entropy on logits; metrics ``loss``, ``acc``, ``nll``, ``ece``;
  the best epoch has the highest ``val/acc`` (ties: lower ``val/loss``); MC dropout averages
  softmax outputs. The best weights' test adds uncertainty summaries (``test/entropy``,
  ``test_mc/mi``, ...), reliability bins, MC dropout's curve over T (:func:`mc_ladder`) and,
  with an OOD dataset, ``ood/*`` detection metrics.
- :class:`Reconstruction`: the model returns one logit per input value, its reconstruction is
  their sigmoid, and the target is the input image in pixel units [0, 1] (the model reads the
  normalised image); loss ``bce`` (binary cross-entropy, the usual autoencoder loss on [0, 1]
  pixels) or ``mse``; metrics ``loss`` and ``mse`` (per pixel); the best epoch has the lowest
  ``val/loss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from dropbench.data import DataSplits, OodImages, iterate_batches
from dropbench.metrics import (
    detection_metrics,
    prediction_metrics,
    predictive_uncertainty,
    reliability,
    uncertainty_metrics,
)

#: One epoch's metrics, named ``split/metric`` (``train/loss``, ``val/acc``, ...).
Metrics = dict[str, float]
#: The per-example scores a split summarises: weight scaling's softmax entropy (the baseline),
#: and every score of T stochastic passes for MC dropout (see :mod:`dropbench.metrics`).
DETERMINISTIC_SCORES = ("entropy",)
MC_SCORES = ("entropy", "expected_entropy", "mi", "prob_std")


@dataclass
class Tested:
    """The best weights' test results (:meth:`Classification.test`)."""

    metrics: Metrics = field(default_factory=dict)
    #: per-example scores (N,) on the CPU, named ``split/score`` (``test_mc/mi``, ``ood/entropy_mc``)
    scores: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: per split (``test``, ``test_mc``): a reliability diagram's bins (:func:`dropbench.metrics.reliability`)
    reliability: dict[str, dict[str, list]] = field(default_factory=dict)
    #: MC dropout after t of its T passes (:func:`mc_curve`): ``{"t": [...], "test_mc/acc": [...], ...}``;
    #: empty without MC dropout, or with T = 1 (one pass of weight scaling, no stochastic pass)
    mc_curve: dict[str, list] = field(default_factory=dict)


def stochastic_layers(model: nn.Module) -> list[nn.Module]:
    """The regularizer layers that draw random masks (they mark themselves ``stochastic = True``)."""
    return [m for m in model.modules() if getattr(m, "stochastic", False)]


class Classification:
    """Class labels from logits (N, classes)."""

    name = "classification"
    metrics = ("loss", "acc", "nll", "ece")
    headline = "acc"  # what a log line and a table lead with
    supports_mc = True
    supports_ood = True

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

    def test(self, model: nn.Module, data: DataSplits, batch_size: int, mc_samples: int | None) -> Tested:
        """The best weights on the test split: ``test/*`` (weight scaling) with the softmax
        entropy, with ``mc_samples`` also ``test_mc/*`` (MC dropout) with every score of
        :data:`MC_SCORES` and (T > 1) the curve over t of T passes (:func:`mc_curve`, from the
        same passes); each split's reliability bins; with ``data.ood`` the ``ood/*`` detection
        metrics of each split's scores."""
        tested = Tested()
        splits = [("test", 1, DETERMINISTIC_SCORES)]
        if mc_samples:
            splits.append(("test_mc", mc_samples, MC_SCORES))
        for split, samples, names in splits:
            ladder = mc_ladder(samples) if split == "test_mc" and samples > 1 else ()
            log_probs, scores, averages = predict_averages(model, data.test_x, batch_size, samples, ladder)
            if averages:
                tested.mc_curve = mc_curve(averages, data.test_y, split)
            confidence, predicted = log_probs.exp().max(dim=1)
            correct = predicted == data.test_y
            kept = {name: scores[name] for name in names}
            tested.metrics.update(prediction_metrics(log_probs, data.test_y, split))
            tested.metrics.update(uncertainty_metrics(kept, correct, split))
            tested.reliability[split] = reliability(confidence, correct)
            tested.scores.update({f"{split}/{name}": values.cpu() for name, values in kept.items()})
            if data.ood is not None:
                detect_ood(tested, model, data.ood, batch_size, samples, log_probs, kept)
        return tested


def detect_ood(
    tested: Tested,
    model: nn.Module,
    ood: OodImages,
    batch_size: int,
    samples: int,
    test_log_probs: torch.Tensor,
    test_scores: dict[str, torch.Tensor],
) -> None:
    """Add to ``tested`` how well this predictor's scores tell ``ood``'s images (positives) from
    the test split's (negatives, given by their log-probabilities and scores): ``ood/auroc_S``
    and ``ood/fpr95_S`` for weight scaling's ``msp`` and ``entropy``, or for MC dropout's
    ``entropy_mc`` and ``mi_mc``; and the OOD images' own scores as ``ood/SCORE[_mc]``."""
    log_probs, scores = predict(model, ood.x, batch_size, samples)
    suffix = "_mc" if samples > 1 else ""
    for name in test_scores:
        tested.scores[f"ood/{name}{suffix}"] = scores[name].cpu()
    ranked = ("entropy", "mi") if samples > 1 else ("msp", "entropy")
    for name in ranked:
        inside = ood_score(test_log_probs, test_scores, name)
        outside = ood_score(log_probs, scores, name)
        tested.metrics.update(detection_metrics(inside, outside, f"{name}{suffix}"))


def ood_score(log_probs: torch.Tensor, scores: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A score larger on inputs unlike the training data: ``msp`` is the negated maximum softmax
    probability (Hendrycks & Gimpel 2017); the others are uncertainty scores as they are."""
    if name == "msp":
        return -log_probs.exp().max(dim=1).values
    return scores[name]


def predict_log_probs(model: nn.Module, x: torch.Tensor, batch_size: int, samples: int = 1) -> torch.Tensor:
    """(N, classes) log-probabilities of ``model`` in eval mode (see :func:`predict`), without
    the uncertainty scores: every epoch's validation asks for this, and scores only the test."""
    return predict_averages(model, x, batch_size, samples, scored=False)[0]


def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int, samples: int = 1
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(N, classes) log-probabilities of ``model`` in eval mode, and per-example uncertainty
    scores, (N,) each (:func:`dropbench.metrics.predictive_uncertainty`).

    ``samples`` > 1 is MC dropout (Gal & Ghahramani 2016): the stochastic regularizer layers
    stay in training mode and the softmax outputs of ``samples`` passes are averaged (in log
    space, with logaddexp, so that tiny probabilities keep their precision). ``samples`` = 1 is
    one pass in eval mode (weight scaling), not one stochastic pass.
    """
    log_probs, scores, _ = predict_averages(model, x, batch_size, samples)
    return log_probs, scores


#: The pass counts t of MC dropout's curve: 1, 2, 3, 5, then 10, 20, 50, 100, 200, 500, ...
LADDER_START = (1, 2, 3, 5)
LADDER_STEPS = (1, 2, 5)


def mc_ladder(samples: int) -> tuple[int, ...]:
    """The t of :data:`LADDER_START` and 10^k x :data:`LADDER_STEPS` up to ``samples``, and
    ``samples`` itself (the last): ``mc_ladder(30)`` is (1, 2, 3, 5, 10, 20, 30)."""
    ladder, decade = [t for t in LADDER_START if t < samples], 10
    while decade < samples:
        ladder += [decade * step for step in LADDER_STEPS if decade * step < samples]
        decade *= 10
    return (*ladder, samples)


@torch.inference_mode()
def predict_averages(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    samples: int = 1,
    at: tuple[int, ...] = (),
    scored: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """:func:`predict`'s log-probabilities and scores, and for each t in ``at`` (t <= ``samples``)
    the (N, classes) log of the average of the first t passes' probabilities: the running sum's
    value after pass t, so that t = ``samples`` is the returned prediction itself, bit for bit,
    and no pass is added. With ``samples`` > 1 pass 1 is stochastic (MC dropout's t = 1).
    ``scored=False`` leaves the scores out (an empty dict)."""
    model.eval()
    for layer in stochastic_layers(model) if samples > 1 else []:
        layer.train()
    outputs, scores = [], []
    partial: dict[int, list[torch.Tensor]] = {t: [] for t in at if 1 <= t <= samples}
    for start in range(0, len(x), batch_size):
        inputs = x[start : start + batch_size]
        passes = [model(inputs).log_softmax(dim=1) for _ in range(samples)]
        summed = passes[0]
        for t, later in enumerate(passes[1:], start=1):  # one logaddexp per pass, in order
            if t in partial:
                partial[t].append(summed - math.log(t))
            summed = torch.logaddexp(summed, later)
        mean = summed - math.log(samples)
        if samples in partial:
            partial[samples].append(mean)
        outputs.append(mean)
        if scored:
            scores.append(predictive_uncertainty(torch.stack(passes), mean))
    model.eval()
    averages = {t: torch.cat(parts) for t, parts in sorted(partial.items())}
    return (
        torch.cat(outputs),
        {name: torch.cat([s[name] for s in scores]) for name in (scores[0] if scores else ())},
        averages,
    )


#: The metrics of MC dropout's curve over t (``metrics.json`` ``mc_curve``).
CURVE_METRICS = ("acc", "nll", "ece")


def mc_curve(averages: dict[int, torch.Tensor], targets: torch.Tensor, split: str) -> dict[str, list]:
    """``{"t": [t...], "split/acc": [...], "split/nll": [...], "split/ece": [...]}`` of the
    average after t passes (:func:`predict_averages`), t ascending."""
    metrics = [prediction_metrics(log_probs, targets, split) for log_probs in averages.values()]
    curve: dict[str, list] = {"t": list(averages)}
    curve.update({f"{split}/{name}": [m[f"{split}/{name}"] for m in metrics] for name in CURVE_METRICS})
    return curve


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
    supports_ood = False

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

    def test(self, model: nn.Module, data: DataSplits, batch_size: int, mc_samples: int | None) -> Tested:
        """The best weights' ``test/*`` metrics (no MC averaging, no OOD: see ``supports_*``)."""
        return Tested(self.evaluate(model, data.test_x, data.test_y, batch_size, "test"))

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
