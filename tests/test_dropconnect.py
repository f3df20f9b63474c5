"""DropConnect: measured behaviour under fixed seeds (masks, expectation, gradients, Gaussian inference)."""

import functools
import math

import pytest
import torch
from torch import nn

from dropbench.regularizers.dropconnect import (
    DropConnectLinear,
    closed_form_inference,
    compiled,
    dropconnect_linear,
    function,
    gaussian_inference,
    gaussian_moments,
    hashed_keep_bits,
    lane_masks,
    packed_keep_bits,
    relu_gaussian_mean,
)
from dropbench.regularizers.dropconnect.kernels import KERNELS

MODES = ["example", "batch"]


def effective_masks(x, weight, bias, y):
    """Each row's keep masks (M_i, m_i as booleans), read back from one training forward ``y``.

    Row i of y depends only on row i of x, with dy_ik/dx_ij = s M_ikj W_kj (s >= 1), so one
    backward pass per output unit gives every row's M_i; then s m_i b = y_i - s (M_i * W) x_i.
    """
    rows = []
    for k in range(weight.shape[0]):
        (grad,) = torch.autograd.grad(y[:, k].sum(), x, retain_graph=True)
        rows.append(grad / weight[k])  # (N, in): s M_i[k, :]
    scaled = torch.stack(rows, 1).detach()  # (N, out, in)
    bias_part = y.detach() - torch.einsum("noi,oi,ni->no", scaled, weight.detach(), x.detach())
    return scaled > 0.5, bias_part / bias.detach() > 0.5


@pytest.mark.parametrize("mode", MODES)
def test_output_shapes(mode):
    layer = DropConnectLinear(6, 4, mask=mode)
    for shape in [(6,), (5, 6), (2, 3, 6)]:
        x = torch.randn(shape)
        assert layer.train()(x).shape == (*shape[:-1], 4)
        assert layer.eval()(x).shape == (*shape[:-1], 4)
    gaussian = DropConnectLinear(6, 4, mask=mode, inference="gaussian", activation=torch.relu).eval()
    assert gaussian(torch.randn(2, 3, 6)).shape == (2, 3, 4)


def test_eval_mean_and_p0_are_exactly_nn_linear():
    torch.manual_seed(0)
    linear = nn.Linear(7, 5)
    x = torch.randn(9, 7)
    for kwargs in [{"p": 0.5}, {"p": 0.5, "mask": "batch"}, {"p": 0.0}, {"p": 0.0, "inference": "gaussian"}]:
        layer = DropConnectLinear(7, 5, **kwargs)
        layer.load_state_dict(linear.state_dict())
        assert torch.equal(layer.eval()(x), linear(x))
    for mask in MODES:
        layer = DropConnectLinear(7, 5, p=0.0, mask=mask)
        layer.load_state_dict(linear.state_dict())
        assert torch.equal(layer.train()(x), linear(x))


@pytest.mark.parametrize("p", [0.5, 0.25, 0.2])
@pytest.mark.parametrize("mode", MODES)
def test_drops_fraction_p_of_weights_and_biases(p, mode):
    torch.manual_seed(1)
    n_in, n_out = 40, 50
    x = torch.eye(n_in).repeat(32, 1)  # row n reads column n % 40 of its own effective weights
    y = dropconnect_linear(x, torch.ones(n_out, n_in), torch.zeros(n_out), p, mode)
    scale = 1 / (1 - round(p * 2**16) / 2**16)
    # 64k weights per example (per batch: 2k distinct, each seen 32 times): the standard error
    # of the fraction is below 0.002 per example, 0.011 per batch
    tolerance = 0.012 if mode == "example" else 0.05
    assert abs((y == 0).float().mean().item() - p) < tolerance
    assert torch.all((y == 0) | (y == scale))
    biases = dropconnect_linear(x, torch.zeros(n_out, n_in), torch.ones(n_out), p, mode)
    assert abs((biases == 0).float().mean().item() - p) < (tolerance if mode == "example" else 0.25)
    assert torch.all((biases == 0) | (biases == scale))


def test_per_example_masks_differ_and_per_batch_masks_are_shared():
    torch.manual_seed(2)
    weight, bias = torch.randn(8, 6), torch.randn(8)
    x = torch.randn(1, 6).repeat(64, 1).requires_grad_()
    masks, bias_masks = effective_masks(x, weight, bias, dropconnect_linear(x, weight, bias, 0.5, "example"))
    assert len(masks.flatten(1).unique(dim=0)) == 64 and len(bias_masks.unique(dim=0)) > 40
    masks, bias_masks = effective_masks(x, weight, bias, dropconnect_linear(x, weight, bias, 0.5, "batch"))
    assert torch.equal(masks, masks[:1].expand_as(masks))
    assert torch.equal(bias_masks, bias_masks[:1].expand_as(bias_masks))
    again, _ = effective_masks(x, weight, bias, dropconnect_linear(x, weight, bias, 0.5, "batch"))
    assert not torch.equal(masks[0], again[0])  # a new mask per call


@pytest.mark.parametrize("draw", [packed_keep_bits, hashed_keep_bits])
@pytest.mark.parametrize("p", [0.5, 0.75, 0.3, 3 / 2**16])
def test_keep_bits_every_lane_keeps_one_minus_p(p, draw):
    torch.manual_seed(3)
    words, drawn_p = draw((4000,), p)
    assert drawn_p == round(p * 2**16) / 2**16 and words.dtype == torch.int32
    kept = lane_masks(words, torch.arange(32, dtype=torch.int32)) != 0  # (32 lanes, 4000 words)
    lanes = 1 - kept.float().mean(1)
    assert torch.allclose(lanes, torch.full_like(lanes, drawn_p), atol=0.04)  # 4000 draws: > 5 sigma
    assert abs((1 - kept.float().mean()).item() - drawn_p) < 0.008
    if p < 0.001:  # D = 3 has no bit in the first 8 planes: only the refinement decides
        many = lane_masks(draw((250_000,), p)[0], torch.arange(32, dtype=torch.int32))
        dropped = (many == 0).sum().item()  # 8M entries: 366 drops expected, sd 19
        assert abs(dropped - 8e6 * drawn_p) < 100


@pytest.mark.parametrize("mode", MODES)
def test_expectation_is_preserved(mode):
    torch.manual_seed(4)
    weight, bias, x = torch.randn(5, 10), torch.randn(5), torch.randn(1, 10)
    target = (x @ weight.T + bias)[0]
    sd = ((weight**2 @ x[0] ** 2 + bias**2) * 1.0).sqrt()  # p/(1-p) = 1 at p = 0.5
    if mode == "example":
        y = dropconnect_linear(x.repeat(20000, 1), weight, bias, 0.5, mode)
    else:
        y = torch.cat([dropconnect_linear(x, weight, bias, 0.5, mode) for _ in range(4000)])
    assert torch.all((y.mean(0) - target).abs() < 5 * sd / math.sqrt(len(y)))


def test_gradient_is_exactly_zero_where_a_weight_was_dropped():
    torch.manual_seed(5)
    x = torch.randn(1, 12, requires_grad=True)
    layer = DropConnectLinear(12, 9, p=0.5)
    y = layer(x)
    kept, kept_bias = effective_masks(x, layer.weight, layer.bias, y)
    g = torch.randn(1, 9)
    (y * g).sum().backward()
    assert 0.3 < kept.float().mean() < 0.7
    assert torch.equal(layer.weight.grad != 0, kept[0])
    assert torch.equal(layer.weight.grad, 2 * kept[0] * (g.T @ x.detach()))  # s = 2: exact
    assert torch.equal(layer.bias.grad, 2 * kept_bias[0] * g[0])


def test_gradients_match_the_recovered_masks_row_by_row():
    torch.manual_seed(6)
    x = torch.randn(40, 7, requires_grad=True)  # 40 rows: two 32-row mask words
    layer = DropConnectLinear(7, 5, p=0.5)
    y = layer(x)
    kept, kept_bias = effective_masks(x, layer.weight, layer.bias, y)
    scaled, scaled_bias = 2 * kept, 2 * kept_bias  # s M_i, s m_i
    assert len(kept.flatten(1).unique(dim=0)) == 40
    g = torch.randn(40, 5)
    (y * g).sum().backward()
    expected_w = (scaled * g[:, :, None] * x.detach()[:, None, :]).sum(0)  # sum_i s M_i * (g_i x_i^T)
    assert torch.allclose(layer.weight.grad, expected_w, atol=1e-5, rtol=1e-5)
    assert torch.allclose(layer.bias.grad, (scaled_bias * g).sum(0), atol=1e-5, rtol=1e-5)
    expected_x = torch.einsum("noi,oi,no->ni", scaled, layer.weight.detach(), g)
    assert torch.allclose(x.grad, expected_x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", [0.5, 0.2])
def test_gradcheck_with_the_masks_held_fixed(mode, p):
    x = torch.randn(35, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def fixed_masks(*args):
        torch.manual_seed(7)  # the same masks at every evaluation
        return dropconnect_linear(*args, p, mode)

    assert torch.autograd.gradcheck(fixed_masks, (x, w, b))
    assert torch.autograd.gradcheck(fixed_masks, (x, w, None))


def test_chunk_size_does_not_change_masks_or_gradients():
    x = torch.randn(70, 9)
    weight, bias = torch.randn(11, 9), torch.randn(11)

    def run(**chunk):
        torch.manual_seed(8)
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        y = dropconnect_linear(x, w, b, 0.3, backend="eager", **chunk)
        y.square().sum().backward()
        return y.detach(), w.grad, b.grad

    default = run()  # all 70 rows' masks fit one chunk: 32-row chunks
    small = run(chunk_elements=250)  # 2-row chunks
    assert torch.equal(default[0], small[0])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(default, small, strict=True))


@pytest.fixture
def fresh_compile_state(monkeypatch):
    """Compiling has not failed in this test, whatever earlier tests did."""
    monkeypatch.setattr(compiled, "_failed", [])


@pytest.mark.parametrize(("n_in", "n_out", "bias"), [(9, 11, True), (9, 11, False), (32, 16, True)])
def test_fused_kernels_match_the_eager_path(fresh_compile_state, n_in, n_out, bias):
    """(9, 11): the plain grad_x kernel; (32, 16): whole tiles, the tiled one."""

    def run(backend):
        torch.manual_seed(14)
        x = torch.randn(40, n_in, requires_grad=True)  # 40 rows: a padded second mask word
        w = torch.randn(n_out, n_in, requires_grad=True)
        b = torch.randn(n_out, requires_grad=True) if bias else None
        y = dropconnect_linear(x, w, b, 0.3, backend=backend)
        (y * torch.randn(40, n_out)).sum().backward()
        return y.detach(), x.grad, w.grad, *([b.grad] if bias else [])

    eager, fused = run("eager"), run("fused")
    assert compiled.available() and set(compiled._compiled) >= {"keep_bits", "forward", "grad_weight"}
    assert ("grad_x_tiled" if n_in == 32 else "grad_x") in compiled._compiled
    assert torch.equal(eager[0] == 0, fused[0] == 0)  # the same masks: the same bits drawn
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(eager, fused, strict=True))
    assert torch.equal(eager[2] == 0, fused[2] == 0)  # dropped for every row: exactly zero in both


def test_fused_and_eager_keep_bits_are_the_same_words(fresh_compile_state):
    keys = torch.randint(-(2**31), 2**31, (16,), dtype=torch.int32)
    p = 0.1  # D = 6554: its lowest set bit is bit 1, so plane 0 is skipped (p = 0.3 elsewhere: all 16)
    eager, _ = hashed_keep_bits((3, 70_000), p, keys=keys)  # 4 chunks of the eager generator
    fused = compiled.run("keep_bits", keys, eager.numel(), round(p * 2**16))
    assert torch.equal(fused.view(3, 70_000), eager)


def test_fused_gradcheck_with_the_masks_held_fixed(fresh_compile_state):
    x = torch.randn(35, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def fixed_masks(*args):
        torch.manual_seed(7)  # the same masks at every evaluation
        return dropconnect_linear(*args, 0.2, backend="fused")

    assert torch.autograd.gradcheck(fixed_masks, (x, w, b))
    assert compiled.available()


def test_hashed_keep_bits_are_independent_across_lanes_words_and_calls():
    """Counter-based bits: neighbouring lanes, neighbouring words and two calls must not be
    correlated. 2**18 words x 32 lanes: a pair frequency near p^2 = 0.04 has a standard error
    of 2e-4 for one lane pair (7e-5 over pairs of words), so 2e-3 is > 10 sigma off chance,
    yet a correlation coefficient of 0.015 between the two bits would exceed it."""
    torch.manual_seed(16)
    lanes = torch.arange(32, dtype=torch.int32)
    first, p = hashed_keep_bits((1 << 18,), 0.2)
    second, _ = hashed_keep_bits((1 << 18,), 0.2)
    dropped, again = lane_masks(first, lanes) == 0, lane_masks(second, lanes) == 0  # (32, words)
    pairs = {
        "next lane": dropped[:-1] & dropped[1:],
        "next word": dropped[:, :-1] & dropped[:, 1:],
        "next call": dropped & again,
        "lane 0 and 31": dropped[0] & dropped[31],
    }
    assert abs(dropped.float().mean().item() - p) < 1e-3
    for name, both in pairs.items():
        assert abs(both.float().mean().item() - p * p) < 2e-3, name


def test_a_failing_compile_falls_back_to_the_eager_path(monkeypatch):
    x, weight, bias = torch.randn(5, 4), torch.randn(3, 4), torch.randn(3)
    torch.manual_seed(15)
    eager = dropconnect_linear(x, weight, bias, 0.5, backend="eager")

    def no_compiler(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled, "_failed", [])
    monkeypatch.setattr(compiled, "_compiled", dict.fromkeys(KERNELS, no_compiler))
    torch.manual_seed(15)
    with pytest.warns(UserWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        fallback = dropconnect_linear(x, weight, bias, 0.5, backend="fused")
    assert torch.equal(fallback, eager) and len(compiled._failed) == 1
    assert not function.uses_fused("fused", 10**9) and not function.uses_fused("auto", 10**9)


def test_auto_backend_fuses_only_large_calls(fresh_compile_state):
    assert function.uses_fused("auto", function.FUSED_MIN_ENTRIES)
    assert not function.uses_fused("auto", function.FUSED_MIN_ENTRIES - 1)
    assert function.uses_fused("fused", 1) and not function.uses_fused("eager", 10**12)


def test_gaussian_moments_match_monte_carlo_over_masks():
    torch.manual_seed(9)
    weight, bias, x = torch.randn(6, 50) / 7, torch.randn(6), torch.randn(1, 50)
    p, n = 0.3, 20000
    mean, var = gaussian_moments(x, weight, bias, p)
    y = dropconnect_linear(x.repeat(n, 1), weight, bias, p)
    assert torch.all((y.mean(0) - mean[0]).abs() < 5 * (var[0] / n).sqrt())
    assert torch.allclose(y.var(0), var[0], rtol=0.05)  # the variance's sd is ~1% at n = 20000
    assert torch.allclose(var, p / (1 - p) * (x**2 @ (weight**2).T + bias**2))


def relu_of_normal_mean(mean, var, points=200_001):
    """E[relu(u)] for u ~ N(mean, var) by numerical integration (trapezoid over +-12 sd), an
    independent check of the closed form."""
    sd = var.double().sqrt()
    t = torch.linspace(-12, 12, points, dtype=torch.float64)
    u = mean.double()[..., None] + sd[..., None] * t
    density = torch.exp(-(t**2) / 2) / math.sqrt(2 * math.pi)
    return torch.trapezoid(torch.relu(u) * density, t).float()


def test_relu_gaussian_mean_is_the_integral_and_relu_at_zero_variance():
    mean = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0, 2.0, -2.0, 0.0])
    var = torch.tensor([1.0, 0.3, 2.0, 0.01, 9.0, 0.0, 0.0, 0.0])
    closed = relu_gaussian_mean(mean, var)
    assert torch.allclose(closed[:5], relu_of_normal_mean(mean[:5], var[:5]), atol=1e-5)
    assert torch.equal(closed[5:], torch.tensor([2.0, 0.0, 0.0]))  # var 0: u is the constant mean
    assert torch.allclose(relu_gaussian_mean(mean, var + 1e-12), closed, atol=1e-5)  # continuous there
    mean.requires_grad_()
    relu_gaussian_mean(mean, var).sum().backward()
    assert torch.isfinite(mean.grad).all()


def test_closed_form_equals_the_sampled_estimate_within_its_monte_carlo_error():
    """Z draws estimate E[relu(u)] with standard error sd(relu(u)) / sqrt(Z) <= sd(u) / sqrt(Z)
    (relu is 1-Lipschitz). 4.5 standard errors: a false alarm has probability 7e-6 per unit, about
    1e-4 for the 18 units here, and the seed is fixed; relu(mean), the naive answer, is many
    standard errors away (asserted), so the test does tell the two apart."""
    torch.manual_seed(10)
    weight, bias, x = torch.randn(6, 100) / 10, torch.randn(6) / 3, torch.randn(3, 100)
    p, samples = 0.5, 40000
    mean, var = gaussian_moments(x, weight, bias, p)
    tolerance = 4.5 * (var / samples).sqrt()
    layer = DropConnectLinear(100, 6, p=p, inference="gaussian", activation=torch.relu).eval()
    layer.load_state_dict({"weight": weight, "bias": bias})
    with torch.no_grad():
        closed = layer(x)
        layer.inference, layer.samples = "gaussian_sampled", samples
        sampled = layer(x)
    assert torch.all((closed - sampled).abs() < tolerance)
    assert torch.all((closed - relu_of_normal_mean(mean, var)).abs() < 1e-5)
    assert ((closed - torch.relu(mean)).abs() > 5 * tolerance).any()


def test_gaussian_inference_estimates_the_relu_expectation():
    torch.manual_seed(10)
    weight, bias, x = torch.randn(6, 100) / 10, torch.randn(6) / 3, torch.randn(3, 100)
    p = 0.5
    mean, var = gaussian_moments(x, weight, bias, p)
    estimate = gaussian_inference(x, weight, bias, p, torch.relu, samples=40000)
    assert torch.allclose(estimate, relu_gaussian_mean(mean, var), atol=5 * (var / 40000).sqrt().max().item())
    # the paper's claim: with 100 inputs the Gaussian is close to the true mask distribution
    monte_carlo = torch.relu(dropconnect_linear(x.repeat_interleave(20000, 0), weight, bias, p)).view(
        3, 20000, 6
    )
    assert torch.allclose(relu_gaussian_mean(mean, var), monte_carlo.mean(1), atol=0.03)
    assert not torch.allclose(torch.relu(mean), monte_carlo.mean(1), atol=0.03)  # relu(E[u]) is not it


def test_gaussian_inference_without_activation_is_the_mean_of_the_draws():
    torch.manual_seed(11)
    weight, bias, x = torch.randn(4, 20), torch.randn(4), torch.randn(1, 20).repeat(5000, 1)
    mean, var = gaussian_moments(x[:1], weight, bias, 0.5)
    draws = gaussian_inference(x, weight, bias, 0.5, None, samples=100)
    assert torch.allclose(draws.mean(0), mean[0], atol=(5 * (var[0] / 100 / 5000).sqrt()).max().item())
    assert torch.allclose(draws.std(0), (var[0] / 100).sqrt(), rtol=0.05)
    linear = DropConnectLinear(20, 4, p=0.5, inference="gaussian").eval()  # closed form: E[u] itself
    assert torch.equal(linear(x[:3]), nn.functional.linear(x[:3], linear.weight, linear.bias))


def test_module_applies_its_activation_in_every_mode():
    torch.manual_seed(12)
    layer = DropConnectLinear(
        30, 8, p=0.5, inference="gaussian_sampled", samples=20000, activation=torch.relu
    )
    x = torch.randn(4, 30)
    assert torch.all(layer.train()(x) >= 0)
    mean, var = gaussian_moments(x, layer.weight, layer.bias, 0.5)
    with torch.no_grad():
        estimate = layer.eval()(x)
        layer.inference = "gaussian"
        closed = layer(x)
    assert torch.allclose(estimate, relu_gaussian_mean(mean, var), atol=5 * (var / 20000).sqrt().max().item())
    assert torch.equal(closed, relu_gaussian_mean(mean, var))
    layer.inference = "mean"
    assert torch.equal(layer(x), torch.relu(nn.functional.linear(x, layer.weight, layer.bias)))


def test_closed_form_needs_a_relu():
    with pytest.raises(ValueError, match="closed form for a ReLU.*gaussian_sampled"):
        DropConnectLinear(4, 3, inference="gaussian", activation=torch.tanh)
    for relu in (torch.relu, nn.functional.relu, nn.ReLU()):
        DropConnectLinear(4, 3, inference="gaussian", activation=relu)
    DropConnectLinear(4, 3, inference="gaussian_sampled", activation=torch.tanh)


def test_same_seed_same_masks():
    layer = DropConnectLinear(5, 3)
    x = torch.randn(10, 5)
    torch.manual_seed(13)
    first = layer(x)
    torch.manual_seed(13)
    assert torch.equal(first, layer(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.0}, r"p=1.0 is out of range.*\[0, 1\)"),
        ({"p": -0.1}, r"p=-0.1 is out of range"),
        ({"p": "0.5"}, r"p='0.5' is not a number"),
        ({"mask": "unit"}, r"mask='unit' .* valid: example, batch$"),
        ({"backend": "gpu"}, r"backend=.gpu. .* valid: auto, fused, eager$"),
        ({"inference": "median"}, r"inference='median' .* valid: mean, gaussian, gaussian_sampled$"),
        ({"samples": 0}, r"samples=0 .* valid: an integer >= 1$"),
        ({"samples": 2.5}, r"samples=2.5 .* valid: an integer >= 1$"),
        ({"samples": True}, r"samples=True .* valid: an integer >= 1$"),
    ],
)
def test_bad_values_raise_naming_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DropConnectLinear(4, 3, **kwargs)


def test_bad_values_raise_in_the_functions():
    x, w, b = torch.randn(2, 4), torch.randn(3, 4), torch.randn(3)
    with pytest.raises(ValueError, match="valid: example, batch"):
        dropconnect_linear(x, w, b, 0.5, mask="row")
    with pytest.raises(ValueError, match="p=1.5 is out of range"):
        dropconnect_linear(x, w, b, 1.5)
    with pytest.raises(ValueError, match="p=1 is out of range"):
        gaussian_moments(x, w, b, 1)


def test_is_a_drop_in_nn_linear():
    linear = nn.Linear(6, 4)
    factory = functools.partial(DropConnectLinear, p=0.3, mask="batch", inference="gaussian")
    layer = factory(6, 4)
    assert isinstance(layer, nn.Linear) and layer.stochastic
    assert list(layer.state_dict()) == list(linear.state_dict()) == ["weight", "bias"]
    layer.load_state_dict(linear.state_dict())
    assert torch.equal(layer.weight, linear.weight)
    assert layer.extra_repr() == (
        "in_features=6, out_features=4, bias=True, p=0.3, mask=batch, inference=gaussian"
    )
    no_bias = DropConnectLinear(6, 4, bias=False, activation=torch.relu)
    assert no_bias.bias is None and list(no_bias.state_dict()) == ["weight"]
    assert no_bias.extra_repr().endswith("p=0.5, mask=example, inference=mean, activation=relu")
    sampled = DropConnectLinear(6, 4, inference="gaussian_sampled", samples=50, backend="eager")
    assert sampled.extra_repr().endswith("inference=gaussian_sampled, samples=50, backend=eager")
    no_bias(torch.randn(3, 6)).sum().backward()
    assert no_bias.weight.grad is not None


def test_bfloat16_variance_moves_the_closed_form_far_less_than_sampling_would():
    """The layer's large calls may take the variance product in bfloat16 (4x faster where it is
    native). Claimed bound: 0.001-0.002 sd, against the 0.03 sd Monte Carlo error of 1000 draws."""
    torch.manual_seed(17)
    weight, bias, x = torch.randn(300, 800) / 30, torch.randn(300) / 3, torch.relu(torch.randn(256, 800))
    mean, var = gaussian_moments(x, weight, bias, 0.5)
    exact = closed_form_inference(x, weight, bias, 0.5, relu=True)
    low = closed_form_inference(x, weight, bias, 0.5, relu=True, variance_dtype=torch.bfloat16)
    error = ((low - exact).abs() / var.sqrt()).max().item()
    assert 0 < error < 0.002
    layer = DropConnectLinear(800, 300, p=0.5, inference="gaussian", activation=torch.relu).eval()
    layer.load_state_dict({"weight": weight, "bias": bias})
    with torch.no_grad():  # 76,800 outputs: the compiled, maybe bfloat16, path
        assert ((layer(x) - exact).abs() / var.sqrt()).max().item() < 0.002


def test_a_smaller_batch_reuses_the_larger_batch_kernels_with_the_same_masks(
    fresh_compile_state, monkeypatch
):
    """An epoch's last batch (here 40 rows after 70: 2 groups after 3) is padded to the earlier
    group count, so no kernel is compiled twice; its masks are those an unpadded call draws."""
    monkeypatch.setattr(function, "_most_groups", {})
    weight, bias = torch.randn(16, 32, requires_grad=True), torch.randn(16, requires_grad=True)

    def run(rows, backend="fused"):
        torch.manual_seed(18)
        x = torch.randn(rows, 32, requires_grad=True)
        y = dropconnect_linear(x, weight, bias, 0.3, backend=backend)
        (y * y).sum().backward()
        return y.detach(), x.grad

    run(70)
    padded = run(40)
    assert function._most_groups[(16, 32, False, torch.float32, torch.device("cpu"))] == 3
    eager = run(40, backend="eager")
    assert torch.equal(padded[0] == 0, eager[0] == 0)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(padded, eager, strict=True))


def test_only_a_layer_that_may_run_the_fused_kernels_starts_the_warm_up(monkeypatch):
    from dropbench import warmup

    started = []
    monkeypatch.setattr(warmup, "start", lambda: started.append(True))
    DropConnectLinear(4, 3, p=0.5, mask="batch")
    DropConnectLinear(4, 3, p=0.0)
    DropConnectLinear(4, 3, p=0.5, backend="eager")
    assert not started
    DropConnectLinear(4, 3, p=0.5)
    assert started == [True]
