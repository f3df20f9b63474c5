"""NLL, accuracy, ECE and MC dropout prediction, checked against hand computations."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from dropbench.metrics import expected_calibration_error, prediction_metrics
from dropbench.models import MLP
from dropbench.regularizers import Dropout
from dropbench.tasks import predict_log_probs, stochastic_layers


def test_ece_by_hand():
    confidence = torch.tensor([0.9, 0.9, 0.6, 0.6])
    correct = torch.tensor([True, False, True, True])
    # bin (13/15, 14/15]: accuracy 0.5 vs confidence 0.9; bin (8/15, 9/15]: 1.0 vs 0.6; each half the data
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert expected_calibration_error(torch.tensor([1.0, 1.0]), torch.tensor([True, True])) == 0.0


def test_prediction_metrics_match_cross_entropy():
    torch.manual_seed(0)
    logits, targets = torch.randn(50, 7), torch.randint(0, 7, (50,))
    metrics = prediction_metrics(logits.log_softmax(1), targets, "test")
    assert metrics["test/nll"] == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)
    assert metrics["test/loss"] == metrics["test/nll"]
    assert metrics["test/acc"] == pytest.approx((logits.argmax(1) == targets).float().mean().item())
    assert 0 <= metrics["test/ece"] <= 1


def test_mc_dropout_averages_stochastic_passes_and_restores_eval_mode():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, hidden=(32,), drop=partial(Dropout, p=0.5))
    x = torch.randn(20, 1, 4, 4)
    deterministic = predict_log_probs(model, x, batch_size=8)
    assert torch.allclose(deterministic, model.eval()(x).log_softmax(1))
    torch.manual_seed(1)
    mc = predict_log_probs(model, x, batch_size=8, samples=200)
    torch.manual_seed(1)
    assert torch.equal(mc, predict_log_probs(model, x, batch_size=8, samples=200))  # seeded
    assert not torch.allclose(mc, deterministic)
    assert torch.allclose(mc.exp().sum(1), torch.ones(20), atol=1e-5)
    # one batch, so the masks come in the same order as in an explicit average of probabilities
    torch.manual_seed(1)
    mc = predict_log_probs(model, x, batch_size=20, samples=200)
    assert not any(m.training for m in model.modules())  # back in eval mode, regularizers too
    torch.manual_seed(1)
    model.train()
    explicit = torch.stack([model(x).softmax(1) for _ in range(200)]).mean(0)
    assert torch.allclose(mc.exp(), explicit, atol=1e-5)


def test_only_mask_drawing_layers_count_as_stochastic():
    assert len(stochastic_layers(MLP((1, 4, 4), 3, hidden=(8, 8), drop=partial(Dropout, p=0.1)))) == 2
    assert stochastic_layers(MLP((1, 4, 4), 3, hidden=(8, 8))) == []
