"""The CIFAR ResNet: shapes on MNIST and CIFAR, depth 6n+2, option-A shortcuts, its regularizer
slots and the pairs they make valid, and ``dropbench run model=resnet`` end to end."""

import json
from functools import partial

import pytest
import torch
from fakedata import fake_splits
from tinyrun import TINY, run_dirs
from torch import nn

from dropbench.build import build_training, check_config, compose_config
from dropbench.combinations import invalid_pairs
from dropbench.errors import ConfigError
from dropbench.models import ResNet
from dropbench.models.resnet import shortcut
from dropbench.regularizers import Dropout, DropPath, SpatialDropout, hidden_weights

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
SMALL = ["model=resnet", "model.depth=8", "model.widths=[4,8,8]"]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_resnet_runs_on_mnist_and_cifar_shapes_and_every_parameter_gets_a_gradient(shape):
    torch.manual_seed(0)
    model = ResNet(shape, num_classes=7, depth=8, widths=(4, 8, 8), drop=partial(Dropout, p=0.5))
    logits = model(torch.randn(5, *shape))
    assert logits.shape == (5, 7)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    x = torch.randn(3, *shape)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_resnet_20_is_he_et_al_s_network_of_0_27m_parameters_and_20_weighted_layers():
    model = ResNet((3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 269_722  # He et al. Table 6: 0.27M
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 20 and len(model.blocks) == 9
    assert [b.branch[0].stride for b in model.blocks] == [(1, 1)] * 3 + [(2, 2), (1, 1), (1, 1)] * 2
    assert [b.out_channels for b in model.blocks] == [16] * 3 + [32] * 3 + [64] * 3
    assert model.head.in_features == 64
    assert len(hidden_weights(model)) == 19  # max_norm: every conv, not the head
    wide = ResNet((1, 28, 28), 3, depth=14, widths=(8, 16, 24))
    assert len(wide.blocks) == 6 and wide.head.in_features == 24


@pytest.mark.parametrize("depth", [0, 7, 9, 21, 20.0, True, "20"])
def test_a_depth_other_than_6n_plus_2_is_one_line_naming_the_valid_depths(depth):
    with pytest.raises(ValueError) as refused:
        ResNet((3, 32, 32), 10, depth=depth)
    message = str(refused.value)
    assert message.startswith(f"model.depth={depth!r} is invalid; ") and "\n" not in message
    assert "6n+2" in message and "8, 14, 20" in message


@pytest.mark.parametrize("widths", [(16, 32), (16, 0, 64), (16, 32, 64, 128)])
def test_widths_must_be_three_positive_channel_counts(widths):
    with pytest.raises(ValueError, match=r"^model\.widths=.* is invalid; .*3 stages"):
        ResNet((3, 32, 32), 10, widths=widths)


def test_option_a_shortcuts_subsample_and_zero_pad_and_keep_channels_last():
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    assert shortcut(x, 4, 1) is x
    padded = shortcut(x, 8, 2)
    assert padded.shape == (2, 8, 3, 3) and padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded[:, :4], x[:, :, ::2, ::2]) and not padded[:, 4:].any()
    # a transition block whose branch is dropped is relu(shortcut(x)): its input passes on
    torch.manual_seed(0)
    model = ResNet((4, 6, 6), 3, depth=8, widths=(4, 8, 8), residual_drop=lambda block, blocks: Zero())
    block = model.blocks[1]
    assert torch.equal(block(x), torch.relu(padded))


class Zero(nn.Module):
    """A residual regularizer that always drops the branch."""

    def forward(self, x):
        return torch.zeros_like(x)


def test_each_slot_puts_its_layer_where_the_docstring_says():
    drop, factory = partial(Dropout, p=0.5), partial(SpatialDropout, p=0.2)
    made = []

    def residual(block, blocks):
        made.append((block, blocks))
        return DropPath(0.1)

    model = ResNet(
        (3, 32, 32), 10, depth=14, drop=drop, input_drop=drop, channel_drop=factory, residual_drop=residual
    )
    assert made == [(block, 6) for block in range(1, 7)]  # the model says which block of how many
    assert isinstance(model.input_drop, Dropout) and isinstance(model.drop, Dropout)
    assert all(isinstance(b.branch[3], SpatialDropout) for b in model.blocks)  # between the convs
    assert all(isinstance(b.residual_drop, DropPath) for b in model.blocks)
    plain = ResNet((3, 32, 32), 10, depth=14)
    assert all(
        isinstance(m, nn.Identity) for m in (plain.input_drop, plain.drop, *plain.blocks[0].branch[3:4])
    )
    with pytest.raises(ValueError, match=r"^reg\.place=before: the ResNet .*use reg\.place=after$"):
        ResNet((3, 32, 32), 10, drop=partial(Dropout, p=0.5, place="before"))


def test_the_resnet_s_slots_make_exactly_these_regs_valid_and_droppath_is_resnet_only():
    refused = invalid_pairs()
    regs = {reg for _, reg in refused} | {"none", "l2", "dropout"}
    valid = {reg for reg in regs if ("resnet", reg) not in refused}
    assert valid == {"none", "l2", "dropout", "spatial", "conv_dropout", "droppath"}
    for model in ("mlp", "cnn", "lstm", "autoencoder"):
        reason = refused[(model, "droppath")]
        assert reason.startswith("it acts on residual branches, and the ") and "use reg=" in reason
        assert "reg=droppath" not in reason


@pytest.fixture(scope="module")
def splits():
    return fake_splits(32, 8, val_size=8)


def built(splits, *overrides):
    cfg = compose_config([*SMALL, "device=cpu", *overrides])
    return build_training(cfg, check_config(cfg), splits).model


def test_the_reg_configs_fill_the_resnet_s_slots(splits):
    model = built(splits, "reg=droppath", "p=0.3", "model.depth=14")
    assert [b.residual_drop.p for b in model.blocks] == pytest.approx(
        [block / 6 * 0.3 for block in range(1, 7)]
    )
    model = built(splits, "reg=dropout", "p=0.3", "reg.input_p=0.1")
    assert (model.drop.p, model.input_drop.p) == (0.3, 0.1)
    assert all(isinstance(b.residual_drop, nn.Identity) for b in model.blocks)
    model = built(splits, "reg=conv_dropout", "p=0.2")
    assert all(type(b.branch[3]) is Dropout and b.branch[3].p == 0.2 for b in model.blocks)
    model = built(splits, "reg=spatial", "p=0.2")
    assert all(type(b.branch[3]) is SpatialDropout for b in model.blocks)


def test_a_bad_depth_is_refused_by_the_config_check_before_any_data():
    cfg = compose_config([*SMALL, "model.depth=10"])
    with pytest.raises(ConfigError, match=r"^model\.depth=10 is invalid; .*6n\+2"):
        check_config(cfg)
    cfg = compose_config([*SMALL, "model.widths=[4,8]"])
    with pytest.raises(ConfigError, match=r"^model\.widths=\[4, 8\] is invalid"):
        check_config(cfg)


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_dropbench_runs_a_resnet_with_droppath_end_to_end(dropbench, tmp_path, dataset):
    done = dropbench("run", *SMALL, f"dataset={dataset}", *TINY, "reg=droppath", "p=0.2", "eval.mc_samples=2")
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    assert f"{dataset}/resnet/droppath/p0.2" in run_dir.as_posix()
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "finished" and len(record["history"]) == 2
    assert 0.0 <= record["final"]["test/acc"] <= 1.0 and "test_mc/acc" in record["final"]
    assert record["resolved_config"]["model"]["depth"] == 8


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["model=mlp", "reg=droppath"],
            "dropbench: error: reg=droppath does not apply to model=mlp: it acts on residual branches, "
            "and the MLP offers no such place; use reg=dropconnect or reg=dropout",
        ),
        (
            [*SMALL, "model.depth=21", "dataset.download=false"],
            "dropbench: error: model.depth=21 is invalid; a CIFAR ResNet has depth 6n+2, n >= 1: "
            "8, 14, 20, 26, 32, 44, 56, 110, ...",
        ),
    ],
)
def test_an_invalid_pair_or_depth_stops_the_cli_with_one_line_and_exit_2(
    dropbench, tmp_path, overrides, line
):
    done = dropbench("run", *overrides, *TINY, "dataset.root=/nonexistent")  # the data is never looked for
    assert done.returncode == 2
    assert done.stderr.strip() == line
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]  # nothing written
