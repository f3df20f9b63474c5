"""Metrics computed from predicted class probabilities (kept as logs for precision).

Every function returns plain floats named ``split/metric``: ``loss`` (the training objective,
mean cross-entropy), ``nll`` (the same quantity for a deterministic model; for MC averaging it
is -log of the averaged probability), ``acc`` and ``ece``.
"""

from __future__ import annotations

import torch

#: Bins of the expected calibration error, as in Guo et al. 2017 and Gal & Ghahramani 2016.
ECE_BINS = 15


def expected_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS
) -> float:
    """ECE (Naeini et al. 2015; Guo et al. 2017): sum over equal-width confidence bins of
    |accuracy - mean confidence| weighted by the bin's share of examples."""
    bin_index = (confidence * bins).ceil().long().clamp(1, bins) - 1  # (0, 1/bins] is bin 0
    gap_per_bin = torch.bincount(bin_index, weights=correct.double() - confidence.double(), minlength=bins)
    return float(gap_per_bin.abs().sum() / len(confidence))


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
