"""Metrics computed from predicted class probabilities (kept as logs for precision).

Every function returns plain floats named ``split/metric``: ``loss`` (the training objective,
mean cross-entropy), ``nll`` (the same quantity for a deterministic model; for MC averaging it
is -log of the averaged probability), ``acc`` and ``ece``.

Uncertainty (all in nats, per example, then summarised per split): ``entropy`` (predictive
entropy H[p̄] of the averaged probabilities p̄), and with T stochastic passes p_1..p_T also
``expected_entropy`` (mean_t H[p_t]), ``mi`` (their difference: the mutual information between
the prediction and the weights, the BALD score) and ``prob_std`` (the standard deviation over
the passes of the probability of the predicted class, argmax p̄). Out-of-distribution
detection: ``auroc`` and ``fpr95`` of a score that should be larger on the unfamiliar inputs.
"""

from __future__ import annotations

import math

import torch

#: Bins of the expected calibration error, as in Guo et al. 2017 and Gal & Ghahramani 2016.
ECE_BINS = 15


def expected_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS
) -> float:
    """ECE (Naeini et al. 2015; Guo et al. 2017): sum over equal-width confidence bins of
    |accuracy - mean confidence| weighted by the bin's share of examples."""
    gap_per_bin = torch.bincount(
        confidence_bins(confidence, bins), weights=correct.double() - confidence.double(), minlength=bins
    )
    return float(gap_per_bin.abs().sum() / len(confidence))


def confidence_bins(confidence: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """The equal-width bin of each confidence, right-closed: (0, 1/bins] is bin 0 and a
    confidence of exactly 1.0 falls in the last bin, bins - 1 (not in a bin ``bins``)."""
    return (confidence * bins).ceil().long().clamp(1, bins) - 1


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> dict[str, list]:
    """A reliability diagram's numbers on ECE's bins: per bin the example ``count``, the
    ``accuracy`` and the mean ``confidence`` (NaN for an empty bin)."""
    index = confidence_bins(confidence, bins)
    count = torch.bincount(index, minlength=bins).double()
    hits = torch.bincount(index, weights=correct.double(), minlength=bins)
    confident = torch.bincount(index, weights=confidence.double(), minlength=bins)
    return {
        "count": [int(n) for n in count],
        "accuracy": (hits / count).tolist(),  # 0/0 is NaN: an empty bin has no accuracy
        "confidence": (confident / count).tolist(),
    }


def prediction_metrics(log_probs: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
    """Accuracy, negative log-likelihood and ECE of (N, classes) log-probabilities."""
    nll = -log_probs.gather(1, targets[:, None]).mean()
    confidence, predicted = log_probs.exp().max(dim=1)
    correct = predicted == targets
    return {
        f"{split}/loss": float(nll),
        f"{split}/acc": float(correct.double().mean()),
        f"{split}/nll": float(nll),
        f"{split}/ece": expected_calibration_error(confidence, correct),
    }


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last dimension; 0 log 0 counts as 0 (xlogy)."""
    return -torch.special.xlogy(log_probs.exp(), log_probs.exp()).sum(-1)


def predictive_uncertainty(passes: torch.Tensor, mean_log_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example scores of T stochastic passes: ``passes`` (T, N, classes) log-probabilities and
    their average ``mean_log_probs`` (N, classes). Returns (N,) tensors ``entropy``,
    ``expected_entropy``, ``mi`` and ``prob_std`` (see the module docstring)."""
    predictive = entropy(mean_log_probs)
    expected = entropy(passes).mean(0)
    predicted = mean_log_probs.argmax(1)
    index = predicted[None, :, None].expand(len(passes), -1, 1)
    chosen = passes.gather(2, index).squeeze(2).exp()  # (T, N): the predicted class's probability
    return {
        "entropy": predictive,
        "expected_entropy": expected,
        # never negative (Jensen); clamped so that rounding cannot make it so
        "mi": (predictive - expected).clamp(min=0),
        "prob_std": chosen.std(0, correction=0),  # over the passes; 0 for T = 1
    }


def uncertainty_metrics(
    scores: dict[str, torch.Tensor], correct: torch.Tensor, split: str
) -> dict[str, float]:
    """Each per-example score's mean over the split (``split/score``), over the correct and over
    the wrong predictions (``split/score_correct``, ``split/score_wrong``; NaN when none)."""
    metrics = {}
    for name, values in scores.items():
        values = values.double()
        metrics[f"{split}/{name}"] = float(values.mean())
        metrics[f"{split}/{name}_correct"] = float(values[correct].mean())  # mean of nothing is NaN
        metrics[f"{split}/{name}_wrong"] = float(values[~correct].mean())
    return metrics


#: The true positive rate at which ``fpr95`` reads the false positive rate.
TPR_LEVEL = 0.95


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of a score larger on ``positives``: the probability that a random
    positive scores above a random negative, ties counting half (the Mann-Whitney U statistic
    over n_pos * n_neg, from average ranks)."""
    from scipy.stats import rankdata  # here: importing scipy.stats delays every run's first step by 0.6 s

    n_pos, n_neg = len(positives), len(negatives)
    ranks = rankdata(torch.cat([positives, negatives]).double().cpu().numpy())  # ties: average rank
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def fpr_at_tpr(negatives: torch.Tensor, positives: torch.Tensor, tpr: float = TPR_LEVEL) -> float:
    """The share of negatives flagged at the highest threshold that flags (score >= threshold)
    at least ``tpr`` of the positives: the FPR at 95% TPR of OOD detection (Hendrycks & Gimpel 2017)."""
    needed = math.ceil(tpr * len(positives) - 1e-9)  # the tolerance keeps 0.95 * 20 at 19, not 20
    threshold = positives.sort(descending=True).values[max(needed, 1) - 1]
    return float((negatives >= threshold).double().mean())


def detection_metrics(negatives: torch.Tensor, positives: torch.Tensor, score: str) -> dict[str, float]:
    """``ood/auroc_SCORE`` and ``ood/fpr95_SCORE``: in-distribution test examples are the
    negatives, the other dataset's are the positives."""
    return {
        f"ood/auroc_{score}": auroc(negatives, positives),
        f"ood/fpr95_{score}": fpr_at_tpr(negatives, positives),
    }
