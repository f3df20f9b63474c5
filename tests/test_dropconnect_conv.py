"""DropConnect on conv kernels: exact masks, gradients, drop rates, eval and p=0 identity, the CNN."""

import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from fakedata import fake_splits
from tinyrun import SMALL_MODEL, TINY, run_dirs
from torch import nn

from dropbench.build import build_training, check_config, compose_config
from dropbench.models import CNN
from dropbench.regularizers import DropConnectConv2d, DropConnectLinear, dropconnect_conv2d
from dropbench.regularizers.dropconnect.layer import batch_masked
from dropbench.regularizers.dropconnect.masks import hashed_keep_bits, lane_masks

MODES = ["example", "batch"]


def drawn(p: float) -> tuple[float, float]:
    """(p', s): p rounded to 2**-16 as the masks draw it, and the keep scale 1/(1-p')."""
    rounded = round(p * 2**16) / 2**16
    return rounded, 1 / (1 - rounded)


def explicit_masks(seed: int, n: int, weight, bias, p: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each example's (M_i, m_i) as booleans, drawn again from the generator under ``seed``: bit
    i % 32 of word group i // 32 of the per-example keep bits (the linear layer's layout)."""
    torch.manual_seed(seed)
    keep, _ = hashed_keep_bits((-(-n // 32), weight.numel() + bias.numel()), p)
    masks = []
    for i in range(n):
        bits = lane_masks(keep[i // 32], torch.tensor([i % 32], dtype=torch.int32))[0] != 0
        masks.append((bits[: weight.numel()].view_as(weight), bits[weight.numel() :]))
    return masks


def reference(x, weight, bias, masks, p, **geometry):
    """The per-example loop: example i through F.conv2d with its own masked, rescaled kernel."""
    s = drawn(p)[1]
    rows = [
        F.conv2d(x[i : i + 1], weight * m * s, bias * mb * s, **geometry) for i, (m, mb) in enumerate(masks)
    ]
    return torch.cat(rows)


def tensors(n=37, c_in=3, c_out=5, size=7, k=3, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(n, c_in, size, size, requires_grad=True)
    weight = torch.randn(c_out, c_in, k, k, requires_grad=True)
    bias = torch.randn(c_out, requires_grad=True)
    return x, weight, bias


@pytest.mark.parametrize("chunk", [1, 8, 32])
@pytest.mark.parametrize("geometry", [{"padding": 1}, {"stride": 2, "padding": (0, 2), "dilation": 2}])
def test_each_example_is_convolved_with_its_own_masked_kernel(chunk, geometry):
    x, weight, bias = tensors()  # 37 examples: two mask words, the second partly used
    torch.manual_seed(5)
    y = dropconnect_conv2d(x, weight, bias, 0.3, chunk=chunk, **geometry)
    masks = explicit_masks(5, len(x), weight, bias, 0.3)
    # equal up to the convolutions' float summation order; one mask entry wrong moves an output by ~1
    torch.testing.assert_close(y, reference(x, weight, bias, masks, 0.3, **geometry), rtol=1e-5, atol=1e-5)
    distinct = {tuple(m.flatten().tolist()) for m, _ in masks}
    assert len(distinct) == len(x)  # independent masks: no two examples share one


def test_channels_last_input_and_a_single_image_give_the_same_masks():
    x, weight, bias = tensors()
    torch.manual_seed(6)
    y = dropconnect_conv2d(x, weight, bias, 0.5, padding=1)
    torch.manual_seed(6)
    again = dropconnect_conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias, 0.5, padding=1)
    # Not bit-equal: oneDNN picks its convolution kernel (and so its summation order) by layout,
    # batch size and thread count. Another mask would move outputs by about 1, not 1e-5.
    torch.testing.assert_close(again, y, rtol=0, atol=1e-5)
    torch.manual_seed(6)
    single = dropconnect_conv2d(x[0], weight, bias, 0.5, padding=1)
    torch.testing.assert_close(single, y[0], rtol=0, atol=1e-5)


def test_per_batch_masks_are_one_masked_kernel_for_the_whole_call():
    x, weight, bias = tensors()
    torch.manual_seed(7)
    y = dropconnect_conv2d(x, weight, bias, 0.4, mask="batch", padding=1)
    torch.manual_seed(7)
    w, b = batch_masked(weight, bias, 0.4)  # the linear layer's per-batch draw
    assert torch.equal(y, F.conv2d(x, w, b, padding=1))
    s = drawn(0.4)[1]
    assert torch.all((w == 0) | torch.isclose(w, weight * s)) and (w == 0).any()


@pytest.mark.parametrize("input_grad", [True, False])
def test_gradients_match_autograd_through_the_per_example_loop(input_grad):
    x, weight, bias = tensors(n=40, c_in=4, c_out=6, size=6)
    x.requires_grad_(input_grad)
    geometry = {"stride": 2, "padding": 1}
    torch.manual_seed(8)
    y = dropconnect_conv2d(x, weight, bias, 0.5, chunk=16, **geometry)
    expected = reference(x, weight, bias, explicit_masks(8, len(x), weight, bias, 0.5), 0.5, **geometry)
    g = torch.randn_like(y)
    wrt = (x, weight, bias) if input_grad else (weight, bias)
    got = torch.autograd.grad((y * g).sum(), wrt)
    want = torch.autograd.grad((expected * g).sum(), wrt)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_dropped_weight_gets_exactly_zero_gradient_and_a_kept_one_s_times_its_own():
    x, weight, bias = tensors(n=1, c_in=2, c_out=3, size=5)
    torch.manual_seed(14)
    y = dropconnect_conv2d(x, weight, bias, 0.5, padding=1)
    [(kept, kept_bias)] = explicit_masks(14, 1, weight, bias, 0.5)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    assert 0 < kept.sum() < kept.numel()
    assert torch.equal(weight.grad != 0, kept) and torch.equal(bias.grad != 0, kept_bias)
    plain_w, plain_b = torch.autograd.grad((F.conv2d(x, weight, bias, padding=1) * g).sum(), (weight, bias))
    assert torch.allclose(weight.grad, 2 * kept * plain_w) and torch.allclose(
        bias.grad, 2 * kept_bias * plain_b
    )


@pytest.mark.parametrize("p", [0.5, 0.2, 0.25])
@pytest.mark.parametrize("mode", MODES)
def test_drops_fraction_p_of_kernel_weights_and_biases(p, mode):
    """Each output entry reads one kernel weight: a 1x1 image lit in one channel (example i:
    channel i % 3), a kernel of ones and k - 1 padding give y_i[o, a, b] = s M_i[o, c, k-1-a, k-1-b]."""
    n, c_out, k = 128, 64, 5
    x = torch.zeros(n, 3, 1, 1)
    x[torch.arange(n), torch.arange(n) % 3] = 1.0
    torch.manual_seed(9)
    y = dropconnect_conv2d(x, torch.ones(c_out, 3, k, k), torch.zeros(c_out), p, mode, padding=k - 1)
    rounded, s = drawn(p)
    assert torch.all((y == 0) | (y == s))
    # per example: 128 x 1600 independent entries, sd of the fraction <= 0.0011, so 5 sd = 0.0055;
    # per batch: the 1600 weights of each channel drawn once (4800 in all), 5 sd = 0.036
    tolerance = 0.0056 if mode == "example" else 0.037
    assert abs((y == 0).float().mean().item() - rounded) < tolerance
    if mode == "batch":
        assert torch.equal(y[0::3], y[:1].expand_as(y[0::3]))
    torch.manual_seed(10)
    biases = dropconnect_conv2d(x, torch.zeros(c_out, 3, k, k), torch.ones(c_out), p, mode, padding=k - 1)
    assert torch.all((biases == 0) | (biases == s))
    kept = biases[:, :, 0, 0]  # a bias mask holds over every position of an example
    assert torch.equal(biases, kept[:, :, None, None].expand_as(biases))
    # per example 8192 bias bits (5 sd = 0.028); per batch 64 (5 sd = 0.31)
    assert abs((kept == 0).float().mean().item() - rounded) < (0.028 if mode == "example" else 0.31)


@pytest.mark.parametrize("mode", MODES)
def test_expectation_is_the_plain_convolution(mode):
    torch.manual_seed(11)
    x, weight, bias = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(3)
    target = F.conv2d(x, weight, bias, padding=1)[0]
    # Var[y] = p/(1-p) (sum_j (w_j x_j)^2 + b^2), and p/(1-p) = 1 at p = 0.5
    variance = F.conv2d(x**2, weight**2, bias**2, padding=1)[0]
    if mode == "example":
        y = dropconnect_conv2d(x.expand(8000, -1, -1, -1), weight, bias, 0.5, padding=1)
    else:
        y = torch.cat([dropconnect_conv2d(x, weight, bias, 0.5, "batch", padding=1) for _ in range(2000)])
    assert torch.all((y.mean(0) - target).abs() < 5 * (variance / len(y)).sqrt())


def test_eval_is_the_weight_scaled_conv_and_p0_is_nn_conv2d_in_every_mode():
    torch.manual_seed(12)
    plain = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(6, 3, 8, 8)
    for kwargs in [{"p": 0.5}, {"p": 0.5, "mask": "batch"}, {"p": 0.0}, {"p": 0.0, "mask": "batch"}]:
        layer = DropConnectConv2d(3, 4, 3, padding=1, **kwargs)
        layer.load_state_dict(plain.state_dict())
        # weight scaling: training scaled the kept weights by 1/(1-p'), so E[s M * W] = W is used as is
        assert torch.equal(layer.eval()(x), plain(x))
        if kwargs["p"] == 0.0:
            assert torch.equal(layer.train()(x), plain(x))
    layer = DropConnectConv2d(3, 4, 3, padding=1, p=0.5).train()
    assert not torch.equal(layer(x), layer(x))  # fresh masks on every call


def test_bad_layer_settings_fail_in_one_line_naming_the_value():
    for kwargs, named in [
        ({"p": 1.0}, "p=1.0"),
        ({"mask": "unit"}, "mask='unit'"),
        ({"chunk": 3}, "chunk=3"),
        ({"padding": "same"}, "padding='same'"),
    ]:
        with pytest.raises(ValueError) as refused:
            DropConnectConv2d(3, 4, 3, **kwargs)
        message = str(refused.value)
        assert message.startswith(named) and ("valid" in message or "[0, 1)" in message)


def test_the_cnn_builds_its_conv_layers_from_the_conv_factory():
    torch.manual_seed(13)
    conv = functools.partial(DropConnectConv2d, p=0.3, mask="batch")
    model = CNN((3, 16, 16), 10, channels=(4, 8), fc=(16,), conv=conv)
    convs = [block[0][0] for block in model.features]
    assert [type(c) for c in convs] == [DropConnectConv2d] * 2
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 4, (3, 3), (1, 1)),
        (4, 8, (3, 3), (1, 1)),
    ]
    torch.manual_seed(13)
    plain = CNN((3, 16, 16), 10, channels=(4, 8), fc=(16,))
    assert all(type(block[0][0]) is nn.Conv2d for block in plain.features)
    assert model.state_dict().keys() == plain.state_dict().keys()
    for name, tensor in plain.state_dict().items():  # same weights: the factory draws none of its own
        assert torch.equal(model.state_dict()[name], tensor), name
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(model.eval()(x), plain.eval()(x))


@pytest.fixture(scope="module")
def splits():
    return fake_splits(32, 8, val_size=8)


def built_cnn(splits, *overrides):
    cfg = compose_config([*SMALL_MODEL["cnn"], "device=cpu", "reg=dropconnect", *overrides])
    return build_training(cfg, check_config(cfg), splits).model


def test_reg_dropconnect_keeps_the_cnn_s_conv_layers_plain_by_default(splits):
    model = built_cnn(splits, "p=0.5")
    convs = [block[0][0] for block in model.features]
    assert all(c.p == 0.0 for c in convs)  # reg.conv_p=0: identical to nn.Conv2d, the head only
    assert isinstance(model.head[1], DropConnectLinear) and model.head[1].p == 0.5
    x = splits.test_x[:4].contiguous(memory_format=torch.channels_last)
    model.train()
    assert torch.equal(convs[0](x), F.conv2d(x, convs[0].weight, convs[0].bias, padding=1))


def test_reg_conv_p_drops_the_cnn_s_kernels_with_the_reg_s_mask(splits):
    model = built_cnn(splits, "p=0.5", "reg.conv_p=0.2", "reg.mask=batch", "reg.inference=gaussian")
    convs = [block[0][0] for block in model.features]
    assert [(type(c), c.p, c.mask) for c in convs] == [(DropConnectConv2d, 0.2, "batch")] * 2
    assert model.head[1].inference == "gaussian"  # the head's; the conv layers always weight-scale
    model.eval()
    x = splits.test_x[:4]
    assert torch.equal(convs[0](x), F.conv2d(x, convs[0].weight, convs[0].bias, padding=1))


def test_a_tiny_cnn_trains_end_to_end_with_per_example_kernel_masks(dropbench, tmp_path):
    done = dropbench(
        "run", *SMALL_MODEL["cnn"], "dataset=cifar10", *TINY, "reg=dropconnect", "p=0.3", "reg.conv_p=0.2"
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    assert any("reg.conv_p=0.2" in part for part in run_dir.parts)  # a run folder of its own
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "finished" and record["data"]["shape"] == [3, 32, 32]
    assert all(math.isfinite(row["train/loss"]) for row in record["history"])
    assert 0.0 <= record["final"]["test/acc"] <= 1.0


def test_a_bad_reg_conv_p_is_one_line_before_any_data_loads(dropbench, tmp_path):
    done = dropbench(
        "run",
        *SMALL_MODEL["cnn"],
        *TINY,
        "reg=dropconnect",
        "reg.conv_p=1.5",
        f"dataset.root={tmp_path / 'empty'}",
        "dataset.download=false",
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropbench: error: reg.conv_p=1.5 is ") and "drop probability" in line
