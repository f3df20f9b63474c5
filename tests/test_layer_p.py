"""Per-layer drop rates (``reg.layer_p``): each hidden layer drops at its own rate in training,
nothing in eval, the models keep their state dicts, and a wrong list is one line before any data."""

import math
from functools import partial

import pandas as pd
import pytest
import torch
from fakedata import fake_splits
from omegaconf import OmegaConf
from torch import nn

from dropbench.build import build_model, check_config, compose_config
from dropbench.errors import ConfigError
from dropbench.models import CNN, LSTM, MLP, Autoencoder
from dropbench.models.common import LayerCountError
from dropbench.regularizers import Dropout
from dropbench.report.labels import add_labels
from dropbench.schema import config_conflict, declared_defaults, result_defining

CHOICES = {"dataset": "mnist", "optimizer": "adam", "schedule": "cosine"}


@pytest.fixture(scope="module")
def data():
    return fake_splits(32, 8, val_size=8)  # 1x28x28 images, 10 classes


def composed(model: str, reg: str, *overrides: str):
    cfg = compose_config([f"model={model}", f"reg={reg}", "device=cpu", *overrides])
    return cfg, check_config(cfg, {**CHOICES, "model": model, "reg": reg})


def built(data, model: str, *overrides: str) -> nn.Module:
    cfg, knobs = composed(model, "dropout", *overrides)
    return build_model(cfg, knobs, data)


def drop_layers(model: nn.Module) -> list[Dropout]:
    return [m for m in model.modules() if isinstance(m, Dropout)]


def dropped_fraction(layer: Dropout, units: int, n: int = 512) -> tuple[float, int]:
    """The fraction of ``n x units`` positive inputs the layer zeroes in training, and the count."""
    torch.manual_seed(0)
    x = torch.rand(n, units) + 0.1
    return float((layer.train()(x) == 0).float().mean()), x.numel()


@pytest.mark.parametrize(
    ("model", "overrides", "rates"),
    [
        ("mlp", ["model.hidden=[64,64,64]", "reg.layer_p=[0.1,0.5,0.8]"], [0.1, 0.5, 0.8]),
        ("cnn", ["model.channels=[4]", "model.fc=[32,32]", "reg.layer_p=[0.6,0.2]"], [0.6, 0.2]),
        ("lstm", ["model.hidden=16", "model.layers=2", "reg.layer_p=[0.3,0]"], [0.3, 0.0]),
        ("autoencoder", ["model.hidden=16", "reg.layer_p=[0.4]"], [0.4]),
    ],
)
def test_each_hidden_layer_drops_at_its_own_rate_in_training(data, model, overrides, rates):
    layers = drop_layers(built(data, model, *overrides, "reg.input_p=0.2"))
    hidden = layers[1:]  # the first is input_drop (reg.input_p), built first by every model
    assert layers[0].p == 0.2 and [layer.p for layer in hidden] == rates
    for layer, rate in zip(hidden, rates, strict=True):
        measured, n = dropped_fraction(layer, 256)
        # each of n = 131,072 draws is dropped with probability `rate`: the fraction's standard
        # error is sqrt(rate (1 - rate) / n) <= 0.0014; 5 of them is a false alarm in < 1e-6 runs,
        # and tells 0.1, 0.2, 0.3 ... apart (0.1 apart = 70 standard errors). rate 0 drops none.
        assert abs(measured - rate) <= 5 * math.sqrt(rate * (1 - rate) / n), (rate, measured)


def test_per_layer_rates_are_identity_in_eval_and_at_rate_zero(data):
    model = built(data, "mlp", "model.hidden=[32,32]", "reg.layer_p=[0,0.7]")
    plain = built(data, "mlp", "model.hidden=[32,32]", "p=0")  # the same seed: the same weights
    x = data.test_x
    assert torch.equal(model.eval()(x), plain.eval()(x))
    first, second = drop_layers(model)[1:]
    h = torch.rand(64, 32) + 0.1
    assert torch.equal(first.train()(h), h)  # rate 0: the input itself, even in training
    assert not torch.equal(second.train()(h), h)


def test_a_list_of_equal_rates_is_the_model_of_one_rate_keys_weights_and_masks(data):
    one = built(data, "mlp", "model.hidden=[32,32]", "p=0.5")
    listed = built(data, "mlp", "model.hidden=[32,32]", "reg.layer_p=[0.5,0.5]")
    assert list(one.state_dict()) == list(listed.state_dict())
    pairs = zip(one.state_dict().values(), listed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    outputs = []
    for model in (one, listed):
        torch.manual_seed(1)
        outputs.append(model.train()(data.test_x))
    assert torch.equal(*outputs)  # the same masks, drawn in the same order


def test_the_models_take_one_factory_or_one_per_hidden_layer():
    drop = partial(Dropout, p=0.5)
    mlp = MLP((1, 4, 4), 3, hidden=(8, 8), drop=[partial(Dropout, p=0.1), drop])
    assert [m.p for m in drop_layers(mlp)] == [0.1, 0.5]
    assert len(drop_layers(CNN((1, 8, 8), 3, channels=(2,), fc=(5, 5, 5), drop=drop))) == 3
    with pytest.raises(
        LayerCountError, match=r"^1 drop factories for 2 hidden layers \(model\.hidden=\[8, 8\]\)"
    ):
        MLP((1, 4, 4), 3, hidden=(8, 8), drop=[drop])
    with pytest.raises(LayerCountError, match=r"\(model\.fc=\[5\]\)"):
        CNN((1, 8, 8), 3, channels=(2,), fc=(5,), drop=[drop, drop])
    with pytest.raises(LayerCountError, match=r"\(model\.layers=2\)"):
        LSTM((1, 4, 4), 3, hidden=4, layers=2, drop=[drop])
    with pytest.raises(LayerCountError, match=r"\(its code\)"):
        Autoencoder((1, 4, 4), 3, hidden=4, drop=[drop, drop])


@pytest.mark.parametrize(
    ("model", "overrides", "message"),
    [
        (
            "mlp",
            ["reg.layer_p=[0.3]"],
            "reg.layer_p=[0.3] has 1 rate and model=mlp has 2 hidden layers (model.hidden=[800, 800]); "
            "give 2 rates, or use reg.layer_p=null",
        ),
        ("lstm", ["reg.layer_p=[0.3,0.5]"], "model=lstm has 1 hidden layer (model.layers=1); give 1 rate,"),
        ("mlp", ["reg.layer_p=[]"], "reg.layer_p=[] has 0 rates and model=mlp has 2 hidden layers"),
        ("mlp", ["reg.layer_p=[0.3,1.5]"], "reg.layer_p[1]=1.5 is out of range; reg.layer_p[1] is the drop"),
        ("mlp", ["reg.layer_p=[0.3,abc]"], "reg.layer_p[1]='abc' is not a number"),
        ("mlp", ["reg.layer_p=0.3"], "reg.layer_p=0.3 is invalid; reg.layer_p must be a list"),
        (
            "mlp",
            ["reg.layer_p=[0.3,0.5]", "p=0.3"],
            "p=0.3 sets nothing when reg.layer_p=[0.3, 0.5] gives each hidden layer its rate; "
            "use p=0.5 (its default) or reg.layer_p=null",
        ),
    ],
)
def test_a_wrong_layer_p_is_one_line_naming_the_setting_and_the_model(model, overrides, message):
    with pytest.raises(ConfigError) as refused:
        composed(model, "dropout", *overrides)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_layer_p_defines_the_result_and_an_older_record_without_it_ran_with_null():
    cfg, _ = composed("mlp", "dropout", "reg.layer_p=[0.3,0.5]")
    given = result_defining(OmegaConf.to_container(cfg, resolve=True), uses_p=True)
    assert given["reg.layer_p"] == [0.3, 0.5] and not any(k.startswith("reg.per_layer") for k in given)
    plain, _ = composed("mlp", "dropout")
    current = result_defining(OmegaConf.to_container(plain, resolve=True), uses_p=True)
    older = {k: v for k, v in current.items() if k != "reg.layer_p"}
    defaults = declared_defaults({**CHOICES, "model": "mlp", "reg": "dropout"})
    assert config_conflict(older, current, defaults) is None
    assert "reg.layer_p" in config_conflict(older, given, defaults)


def test_the_report_labels_runs_by_their_layer_rates():
    table = pd.DataFrame(
        {
            "reg": ["dropout"] * 3,
            "p": [0.5] * 3,
            "seed": [0] * 3,
            "reg.layer_p": [None, "[0.3, 0.5]", "[0.5, 0.6]"],  # runs.py writes lists as JSON text
        }
    )
    assert sorted(add_labels(table)["label"]) == [
        "dropout (layer_p=[0.3, 0.5])",
        "dropout (layer_p=[0.5, 0.6])",
        "dropout (layer_p=none)",
    ]
