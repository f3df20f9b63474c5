"""Spatial dropout on images and on sequences (as the LSTM uses it): rates, expectations."""

import pytest
import torch

from dropbench.regularizers.spatial import SpatialDropout, spatial_dropout


def channel_dropped(y: torch.Tensor) -> torch.Tensor:
    """(N, C) bool: every position of the channel is zero."""
    return (y == 0).flatten(2).all(2)


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 7), (2, 3, 5, 5), (2, 3, 4, 4, 4)])
def test_spatial_dropout_preserves_shape(shape):
    assert SpatialDropout(0.3)(torch.randn(shape)).shape == shape


def test_identity_in_eval_and_at_p0():
    x = torch.randn(2, 3, 4, 4)
    assert SpatialDropout(0.5).eval()(x) is x
    assert SpatialDropout(0.0).train()(x) is x
    assert SpatialDropout(0.5).extra_repr() == "p=0.5"


def test_whole_channels_are_dropped_or_kept_and_survivors_rescaled():
    torch.manual_seed(0)
    x = torch.randn(16, 32, 6, 6)  # random input: no position is zero by chance
    y = spatial_dropout(x, 0.4)
    zero = (y == 0).flatten(2)
    assert torch.equal(zero.all(2), zero.any(2))  # a channel is all zero or nowhere zero
    kept = ~channel_dropped(y)
    scale = (y[kept] / x[kept]).flatten()
    assert torch.allclose(scale, torch.full_like(scale, 1 / 0.6), rtol=1e-4)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_measured_fraction_of_dropped_channels_is_p(p):
    torch.manual_seed(1)
    y = spatial_dropout(torch.randn(400, 100, 2, 2), p)
    # 40k channel draws: standard error <= 0.0025, so 0.015 is > 6 sigma
    assert abs(channel_dropped(y).float().mean().item() - p) < 0.015


def test_spatial_dropout_preserves_the_expectation():
    torch.manual_seed(2)
    x = torch.randn(1, 4, 3, 3)
    mean = spatial_dropout(x.expand(20000, -1, -1, -1), 0.5).mean(0, keepdim=True)
    assert torch.allclose(mean, x, atol=0.06)


def test_gradient_is_zero_exactly_on_dropped_channels():
    torch.manual_seed(3)
    x = torch.randn(8, 16, 5, 5, requires_grad=True)
    y = SpatialDropout(0.5).train()(x)
    y.sum().backward()
    dropped = channel_dropped(y)
    assert dropped.any() and (~dropped).any()
    assert torch.equal(channel_dropped(x.grad), dropped)
    assert torch.all(x.grad[~dropped] != 0)


def test_sequence_mask_is_constant_over_time_and_differs_across_sequences():
    torch.manual_seed(4)
    x = torch.randn(64, 28, 28)
    # as the LSTM applies it: (N, T, F) seen as (N, F, T), F channels over T positions
    y = SpatialDropout(0.5).train()(x.transpose(1, 2)).transpose(1, 2)
    dropped = y == 0  # (N, T, F)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same at every step
    per_sequence = dropped[:, 0]
    assert not torch.all(per_sequence == per_sequence[0])  # sequences draw their own masks
    assert abs(per_sequence.float().mean().item() - 0.5) < 0.05


def test_wrong_ranks_are_rejected():
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        spatial_dropout(torch.randn(5), 0.5)


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.5", None])
def test_bad_p_is_rejected_with_the_valid_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SpatialDropout(bad)
