"""Stochastic depth (DropPath): per-example drops, 1/keep scaling, the linear decay rule, eval and
p=0 identity, and the per-block drop rates measured in a ResNet."""

import math
from functools import partial

import pytest
import torch

from dropbench.models import ResNet
from dropbench.regularizers import DropPath, drop_path, linear_decay, stochastic_depth
from dropbench.regularizers.dropout import MASK_LEVELS


def drawn(p: float) -> float:
    """The p a mask is drawn with (keep_mask rounds p to a multiple of 2**-16)."""
    return round(p * MASK_LEVELS) / MASK_LEVELS


def tolerance(p: float, n: int, z: float = 4.0) -> float:
    """z standard errors of a fraction of n Bernoulli(p) draws. Two-sided, 4 SE fails a correct
    rate with probability 6e-5 per check; under the fixed seeds here the outcome is fixed anyway,
    and a wrong rule (another block's rate, or p for every block) lies many SE away."""
    return z * math.sqrt(p * (1 - p) / n)


def test_drop_path_keeps_the_shape_and_drops_whole_examples_at_rate_p():
    torch.manual_seed(0)
    n, p = 20_000, 0.3
    x = torch.rand(n, 4, 3, 3) + 0.1  # positive: a zero means dropped
    out = drop_path(x, p, training=True)
    assert out.shape == x.shape
    zero = (out == 0).flatten(1)
    assert torch.equal(zero.any(1), zero.all(1))  # an example is dropped whole or kept whole
    assert abs(zero.all(1).float().mean().item() - p) < tolerance(p, n)  # 0.3 +- 0.013


def test_kept_examples_are_scaled_by_one_over_keep_so_the_mean_is_preserved():
    torch.manual_seed(1)
    n, p = 20_000, 0.4
    x = torch.rand(n, 5) + 0.5
    out = drop_path(x, p, training=True)
    kept = out[:, 0] != 0
    assert torch.equal(out[kept], x[kept] * (1.0 / (1.0 - drawn(p))))
    # E[out / x] = 1: a mean of n draws of 0 or 1/(1-p), whose SD is sqrt(p/(1-p))
    ratio = (out / x)[:, 0].mean().item()
    assert abs(ratio - 1.0) < 4 * math.sqrt(p / (1 - p) / n)


def test_the_gradient_flows_through_kept_examples_only_scaled_by_one_over_keep():
    torch.manual_seed(2)
    x = torch.rand(64, 3, 2, 2, requires_grad=True)
    out = drop_path(x, 0.5, training=True)
    out.sum().backward()
    kept = (out != 0).flatten(1).all(1)
    assert 0 < kept.sum() < 64
    expected = kept.float().view(-1, 1, 1, 1).expand_as(x) / (1.0 - drawn(0.5))
    assert torch.equal(x.grad, expected)


def test_eval_and_p_zero_return_the_input_itself():
    x = torch.randn(8, 3, 4, 4)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    layer = DropPath(0.5)
    assert layer.eval()(x) is x
    assert DropPath(0.0).train()(x) is x
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # fresh draws in training


def test_the_module_checks_p_and_shows_it():
    assert repr(DropPath(0.25)) == "DropPath(p=0.25)"
    assert DropPath.stochastic  # MC dropout keeps it drawing at test time
    with pytest.raises(ValueError, match=r"^p=1 is out of range"):
        DropPath(1)
    with pytest.raises(ValueError, match="scalar"):
        drop_path(torch.tensor(1.0), 0.5)


def test_the_linear_decay_rule_drops_block_l_of_l_with_l_over_l_times_p():
    rates = [linear_decay(0.5, block, 9) for block in range(1, 10)]
    assert rates == pytest.approx([block / 9 * 0.5 for block in range(1, 10)])
    assert rates[-1] == 0.5  # p is the last block's drop probability (Huang's p_L = 0.5)
    assert linear_decay(0.0, 3, 9) == 0.0
    assert stochastic_depth(3, 9, p=0.3).p == pytest.approx(0.1)
    for block, blocks in ((0, 9), (10, 9)):
        with pytest.raises(ValueError, match=r"^block=\d+ is out of range"):
            linear_decay(0.5, block, blocks)
    with pytest.raises(ValueError, match=r"^p=1.5 is out of range"):
        stochastic_depth(1, 2, p=1.5)


def drop_rates(model: ResNet, x: torch.Tensor) -> list[float]:
    """Per residual block, the fraction of examples whose branch the block dropped in one
    training pass; checks on the way that kept branches come out scaled by 1/(1 - p_l)."""
    rates = []

    def measure(layer, inputs, output):
        (branch,) = inputs
        dropped = (output == 0).flatten(1).all(1)
        assert not (branch == 0).flatten(1).all(1).any()  # a batch-normed branch is never all zero
        scale = 1.0 / (1.0 - drawn(layer.p))
        assert torch.equal(output[~dropped], branch[~dropped] * scale)
        rates.append(dropped.float().mean().item())

    for block in model.blocks:
        block.residual_drop.register_forward_hook(measure)
    model.train()(x)
    return rates


def test_a_resnet_s_blocks_drop_their_branches_at_the_linear_rule_s_rates():
    torch.manual_seed(0)
    p, n = 0.5, 8000
    model = ResNet((3, 8, 8), 10, depth=20, widths=(2, 2, 2), residual_drop=partial(stochastic_depth, p=p))
    expected = [block / 9 * p for block in range(1, 10)]  # 9 blocks: 0.056 ... 0.5
    assert [b.residual_drop.p for b in model.blocks] == pytest.approx(expected)
    measured = drop_rates(model, torch.randn(n, 3, 8, 8))
    for block, (rate, p_l) in enumerate(zip(measured, expected, strict=True), start=1):
        assert abs(rate - p_l) < tolerance(p_l, n), (block, rate, p_l)  # +- 0.010 to 0.022


def test_a_resnet_with_droppath_evaluates_as_the_same_resnet_without_it():
    torch.manual_seed(0)
    dropping = ResNet(
        (1, 12, 12), 4, depth=8, widths=(4, 4, 8), residual_drop=partial(stochastic_depth, p=0.5)
    )
    plain = ResNet((1, 12, 12), 4, depth=8, widths=(4, 4, 8))
    plain.load_state_dict(dropping.state_dict())  # DropPath has no parameters or buffers
    x = torch.randn(16, 1, 12, 12)
    dropping.eval(), plain.eval()
    assert torch.equal(dropping(x), plain(x))
    zero = ResNet((1, 12, 12), 4, depth=8, widths=(4, 4, 8), residual_drop=partial(stochastic_depth, p=0.0))
    zero.load_state_dict(plain.state_dict())
    zero.train(), plain.train()
    assert torch.equal(zero(x), plain(x))  # p = 0: training is the plain network's too
