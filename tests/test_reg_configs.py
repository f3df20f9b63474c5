"""Reg configs composed and built as ``dropbench run`` builds them: which modules land where, and
the pairs the model x reg table refuses."""

import pytest
import torch
from fakedata import fake_splits
from tinyrun import SMALL_MODEL
from torch import nn

from dropbench.build import build_training, check_config, compose_config
from dropbench.combinations import check_combination, invalid_pairs
from dropbench.errors import ConfigError
from dropbench.preflight import config_dir
from dropbench.regularizers import Dropout, NaiveDropoutLSTM, SpatialDropout


@pytest.fixture(scope="module")
def splits():
    return fake_splits(32, 8, val_size=8)  # 1x28x28 images, 10 classes, on the CPU


def built_model(splits, model: str, *overrides: str) -> nn.Module:
    """The model of ``dropbench run model=MODEL OVERRIDES``: the real config, composed and built."""
    cfg = compose_config([*SMALL_MODEL[model], "device=cpu", *overrides])
    return build_training(cfg, check_config(cfg), splits).model


def test_naive_builds_every_lstm_layer_with_per_step_masks_on_inputs_and_outputs(splits):
    model = built_model(splits, "lstm", "reg=naive", "p=0.3", "model.layers=2")
    assert [type(rnn) for rnn in model.rnns] == [NaiveDropoutLSTM, NaiveDropoutLSTM]
    assert all(rnn.p_input == rnn.p_output == 0.3 for rnn in model.rnns)
    others = (model.input_drop, model.channel_drop, *model.drops)
    assert all(isinstance(m, nn.Identity) for m in others)  # naive acts inside the layers only
    x = splits.test_x[:4]
    model.train()
    assert not torch.equal(model(x), model(x))  # fresh masks on every forward
    model.eval()
    assert torch.equal(model(x), model(x))
    plain = nn.LSTM(28, 8, batch_first=True)  # eval: the plain fused LSTM, nothing dropped
    plain.load_state_dict(model.rnns[0].state_dict())
    rows = x[:, 0]  # (N, 28 steps, 28 features): one image row per step
    assert torch.equal(model.rnns[0](rows)[0], plain(rows)[0])


def channel_zeros(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sample, channel) of a positive feature map: (some position zeroed, every position zeroed)."""
    torch.manual_seed(0)
    zero = (layer.train()(torch.rand(16, 8, 7, 7) + 0.1) == 0).flatten(2)
    return zero.any(2), zero.all(2)


@pytest.mark.parametrize(("reg", "kind"), [("conv_dropout", Dropout), ("spatial", SpatialDropout)])
def test_conv_dropout_fills_the_slots_of_spatial_dropout_element_wise(splits, reg, kind):
    model = built_model(splits, "cnn", f"reg={reg}", "p=0.5")
    slots = [block[1] for block in model.features]  # after every conv block
    assert [type(m) for m in slots] == [kind] * len(model.features)
    assert all(m.p == 0.5 for m in slots)
    assert isinstance(model.input_drop, nn.Identity)
    assert not any(isinstance(m, Dropout | SpatialDropout) for m in model.head)
    some, every = channel_zeros(slots[0])
    if reg == "spatial":  # a channel is dropped whole or kept whole
        assert torch.equal(some, every) and every.any()
    else:  # within one channel of one sample, some positions dropped and others kept
        assert slots[0].form == "inverted"
        assert (some & ~every).float().mean() > 0.99


@pytest.mark.parametrize(
    ("model", "reg"),
    [("mlp", "naive"), ("cnn", "naive"), ("mlp", "conv_dropout"), ("lstm", "conv_dropout")],
)
def test_new_regs_refuse_the_models_they_do_not_fit_in_one_line(model, reg):
    assert (model, reg) in invalid_pairs()
    with pytest.raises(ConfigError) as refused:
        check_combination(model, reg)
    message = str(refused.value)
    assert message.startswith(f"reg={reg} does not apply to model={model}: ")
    assert "\n" not in message and "use reg=" in message


def test_every_refused_pair_names_existing_configs():
    for model, reg in invalid_pairs():
        assert (config_dir() / "model" / f"{model}.yaml").is_file(), model
        assert (config_dir() / "reg" / f"{reg}.yaml").is_file(), reg
