"""Training capabilities beyond the regularizer: the L1 penalty, early stopping, the activation,
dropout's place around it, and batch normalisation."""

import pytest
import torch
from fakedata import fake_splits

from dropbench.build import build_training, check_config, compose_config
from dropbench.models import MLP
from dropbench.regularizers import l1_penalty, penalised_weights
from dropbench.train import FitOptions, fit


@pytest.fixture(scope="module")
def data():
    return fake_splits(300, 100, val_size=60)


def test_the_l1_penalty_s_gradient_is_lambda_sign_w_on_weights_and_zero_on_biases():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, hidden=(5, 6))
    weights = penalised_weights(model)
    assert len(weights) == 3 and all(w.ndim == 2 for w in weights)  # two hidden, one output; no bias
    l1_penalty(weights, 0.01).backward()
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            assert parameter.grad is None or not parameter.grad.any(), name
        else:
            assert torch.equal(parameter.grad, 0.01 * parameter.detach().sign()), name
    expected = 0.01 * sum(w.detach().abs().sum() for w in weights)
    assert l1_penalty(weights, 0.01).item() == pytest.approx(expected.item())


def build(data, overrides):
    cfg = compose_config(["device=cpu", "model.hidden=[16]", "batch_size=50", *overrides])
    return build_training(cfg, check_config(cfg), data)


def test_l1_is_off_at_zero_and_a_loss_term_that_shrinks_weights_when_on(data):
    assert build(data, []).penalty is None and build(data, ["l1=0"]).penalty is None
    options = FitOptions(2, 50, 256)
    plain, penalised = build(data, ["reg=none"]), build(data, ["reg=none", "l1=0.01"])
    assert penalised.penalty is not None
    fit(plain, data, options)
    fit(penalised, data, options)

    def total(training):
        return sum(float(w.detach().abs().sum()) for w in penalised_weights(training.model))

    assert total(penalised) < 0.9 * total(plain)
