"""Dropout and L2: measured behaviour under fixed seeds (in the style of timm's drop-layer tests)."""

from functools import partial

import pytest
import torch
from torch import nn

from dropbench.models import CNN, LSTM, MLP
from dropbench.regularizers import (
    Dropout,
    NaiveDropoutLSTM,
    VariationalLSTM,
    WeightDropLSTM,
    apply_max_norm,
    check_drop_probability,
    dropout,
    hidden_weights,
    l2_parameter_groups,
    l2_penalty,
)
from dropbench.regularizers.dropout import keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_fraction_p_and_rescales_survivors(p):
    torch.manual_seed(0)
    x = torch.ones(200, 1000)
    y = dropout(x, p, training=True)
    dropped = (y == 0).float().mean().item()
    # 200k Bernoulli draws: the standard error is below 0.0012, so 0.01 is > 8 sigma
    assert abs(dropped - p) < 0.01
    # survivors share one scale, 1/(1-p') with p' = p at 2**-16 resolution
    survivors = y[y != 0]
    assert torch.all(survivors == survivors[0])
    assert survivors[0].item() == pytest.approx(1 / (1 - p), rel=1e-4)


def test_keep_mask_rounds_p_to_16_bits_and_draws_uniformly():
    torch.manual_seed(0)
    keep, drawn_p = keep_mask((1001, 999), 0.3)  # an odd count: the last 64-bit draw is partly used
    assert keep.shape == (1001, 999) and keep.dtype == torch.bool
    assert abs(drawn_p - 0.3) <= 2**-17
    assert abs((~keep).float().mean().item() - drawn_p) < 0.003
    # every one of the four 16-bit lanes of a draw is used alike
    lanes = (~keep).flatten()[: 1000 * 996].view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full_like(lanes, drawn_p), atol=0.005)


def test_dropout_preserves_the_expectation():
    torch.manual_seed(1)
    x = torch.randn(64)
    mean = torch.stack([dropout(x, 0.5) for _ in range(20000)]).mean(0)
    assert torch.allclose(mean, x, atol=0.05)


def test_dropout_is_identity_in_eval_and_at_p0():
    x = torch.randn(8, 16)
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    assert Dropout(0.0).train()(x) is x
    assert Dropout(0.5).extra_repr() == "p=0.5"


def test_dropout_gradient_is_zero_where_dropped():
    torch.manual_seed(2)
    x = torch.randn(32, 50, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)


def test_dropout_shapes_are_preserved():
    for shape in [(4,), (4, 7), (2, 3, 5, 5), (2, 9, 3)]:
        assert Dropout(0.3)(torch.randn(shape)).shape == shape


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, "0.5", None, True])
def test_bad_drop_probability_is_rejected_with_the_valid_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_drop_probability(bad)
    with pytest.raises(ValueError):
        Dropout(bad)


def test_l2_groups_decay_weights_and_not_biases():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    decayed, plain = l2_parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {p.shape for p in decayed["params"]} == {torch.Size([4, 3]), torch.Size([2, 4])}
    assert {p.shape for p in plain["params"]} == {torch.Size([4]), torch.Size([2])}
    with pytest.raises(ValueError, match="wd=-1"):
        l2_parameter_groups(model, -1)


def test_l2_weight_decay_step_equals_the_penalty_gradient_step():
    """One SGD step with weight_decay=wd moves a weight exactly as the gradient of wd/2*||W||^2."""
    torch.manual_seed(3)
    model = nn.Linear(5, 3)
    reference = nn.Linear(5, 3)
    reference.load_state_dict(model.state_dict())
    wd, lr = 0.3, 0.1
    x = torch.randn(4, 5)
    opt = torch.optim.SGD(l2_parameter_groups(model, wd), lr=lr)
    model(x).sum().backward()
    opt.step()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=lr)
    (reference(x).sum() + 0.5 * wd * reference.weight.pow(2).sum()).backward()
    ref_opt.step()
    assert torch.allclose(model.weight, reference.weight, atol=1e-6)
    assert torch.allclose(model.bias, reference.bias, atol=1e-6)
    squared_norm = float(reference.weight.detach().pow(2).sum())
    assert l2_penalty(reference, wd) == pytest.approx(0.5 * wd * squared_norm)


def test_l2_groups_collapse_to_one_without_decay():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    [group] = l2_parameter_groups(model, 0.0)
    assert group["weight_decay"] == 0.0 and len(group["params"]) == 4


def test_original_form_is_unscaled_in_training_and_scaled_at_test():
    torch.manual_seed(4)
    x = torch.ones(400, 500)
    layer = Dropout(0.3, form="original").train()
    y = layer(x)
    assert set(y.unique().tolist()) == {0.0, 1.0}  # survivors keep their value
    assert abs(y.mean().item() - 0.7) < 0.005  # E[train output] = (1 - p) x
    assert torch.allclose(layer.eval()(x), 0.7 * x)  # = the test output
    with pytest.raises(ValueError, match="valid: inverted, original"):
        Dropout(0.3, form="gaussian")


def test_original_and_inverted_nets_agree_at_test_time_after_reparametrisation():
    """A net trained with original dropout equals, at test time, the inverted-dropout net whose
    weights after each dropout layer are scaled by (1 - p): the two forms are one model."""
    torch.manual_seed(5)
    p = 0.4
    original = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), Dropout(p, form="original"), nn.Linear(8, 3))
    inverted = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), Dropout(p), nn.Linear(8, 3))
    inverted.load_state_dict(original.state_dict())
    with torch.no_grad():
        inverted[3].weight.mul_(1 - p)
    x = torch.randn(10, 6)
    assert torch.allclose(original.eval()(x), inverted.eval()(x), atol=1e-6)


def test_max_norm_caps_each_hidden_units_incoming_weights():
    torch.manual_seed(6)
    model = MLP((1, 4, 4), 3, hidden=(8, 8))
    with torch.no_grad():
        for (w,) in hidden_weights(model):
            w.mul_(10)
        model.net[1].weight[0] = 0.01  # a short row must stay as it is
    short_row = model.net[1].weight[0].clone()
    classifier_before = model.output_layer.weight.clone()
    apply_max_norm(hidden_weights(model), 2.0)
    for (w,) in hidden_weights(model):
        assert w.norm(dim=1).max() <= 2.0 + 1e-5
    assert torch.equal(model.net[1].weight[0], short_row)
    assert torch.equal(model.output_layer.weight, classifier_before)  # output units are not hidden
    conv = CNN((1, 8, 8), 3, channels=(4,), fc=(5,))
    assert len(hidden_weights(conv)) == 2  # the conv kernel and the head's hidden layer


@pytest.mark.parametrize(
    "rnn",
    [
        None,
        partial(VariationalLSTM, p_input=0.2, p_hidden=0.2, p_output=0.2),
        partial(WeightDropLSTM, p=0.3),
        partial(NaiveDropoutLSTM, p_input=0.2, p_output=0.2),
    ],
)
def test_max_norm_caps_each_lstm_gate_units_input_and_recurrent_weights_together(rnn):
    torch.manual_seed(7)
    model = LSTM((1, 6, 6), 3, hidden=5, layers=2, rnn=rnn)
    groups = hidden_weights(model)
    assert len(groups) == 2 and all(len(g) == 2 for g in groups)  # (W_ih, W_hh) of each layer
    with torch.no_grad():
        for ih, hh in groups:
            ih.mul_(10), hh.mul_(10)
        short = torch.cat([groups[0][0][1], groups[0][1][1]]).mul_(0.001)  # row 1 of layer 0: short
        groups[0][0][1], groups[0][1][1] = short[:6], short[6:]
    before = [torch.cat([ih, hh], dim=1).norm(dim=1) for ih, hh in groups]
    assert all(norms[norms > 0.01].min() > 0.5 for norms in before)  # every long row needs rescaling
    apply_max_norm(groups, 0.5)
    for (ih, hh), norms in zip(groups, before, strict=True):
        joint = torch.cat([ih, hh], dim=1).norm(dim=1)
        long = norms > 0.01
        assert torch.allclose(joint[long], torch.full_like(joint[long], 0.5), atol=1e-5)  # onto the ball
    assert torch.equal(torch.cat([groups[0][0][1], groups[0][1][1]]), short)  # a short row stays


def test_max_norm_on_an_lstm_run_constrains_its_rows_after_every_step():
    from fakedata import fake_splits

    from dropbench.build import build_training, check_config, compose_config
    from dropbench.train import train_epoch

    cfg = compose_config(
        ["model=lstm", "model.hidden=16", "reg=none", "max_norm=0.5", "device=cpu", "lr=0.05"]
    )
    data = fake_splits(96, 8, val_size=8)
    training = build_training(cfg, check_config(cfg), data)
    train_epoch(training, data, 32)
    rnn = training.model.rnns[0]
    joint = torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], dim=1).norm(dim=1)
    assert joint.max() <= 0.5 + 1e-5  # before the fix, an LSTM's rows went unconstrained (1.079 seen)
