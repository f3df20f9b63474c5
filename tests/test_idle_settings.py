"""A reg setting that only layers the model never builds would take sets nothing: it is one
line before any data loads, never silently ignored (``placement.check_idle_settings``)."""

import pytest

from dropbench.build import check_config, compose_config
from dropbench.errors import ConfigError

CHOICES = {"dataset": "mnist", "optimizer": "adam", "schedule": "cosine"}


def checked(model: str, reg: str, *overrides: str):
    cfg = compose_config([f"model={model}", f"reg={reg}", "device=cpu", *overrides])
    return check_config(cfg, {**CHOICES, "model": model, "reg": reg})


@pytest.mark.parametrize(
    ("model", "reg", "overrides", "message"),
    [
        (
            "mlp",
            "dropconnect",
            ["reg.conv_p=0.5"],
            "reg.conv_p=0.5 sets nothing: reg=dropconnect uses it on conv layers, and model=mlp with "
            "these settings builds none; use reg.conv_p=0.0",
        ),
        (
            "cnn",
            "dropout",
            ["model.fc=[]"],
            "p=0.5 sets nothing: reg=dropout uses it on hidden activations, and model=cnn with these "
            "settings builds none; give the model such layers, or use reg=none",
        ),
        (
            "lstm",
            "dropconnect",
            ["reg.mask=batch"],
            "reg.mask=batch sets nothing: reg=dropconnect uses it on hidden fully connected layers and "
            "conv layers, and model=lstm with these settings builds none; use reg.mask=example",
        ),
        ("lstm", "dropconnect", ["reg.inference=gaussian"], "use reg.inference=mean"),
        ("lstm", "dropconnect", ["reg.samples=10"], "reg.samples=10 sets nothing"),
    ],
)
def test_a_setting_no_built_layer_takes_is_refused_in_one_line(model, reg, overrides, message):
    with pytest.raises(ConfigError) as refused:
        checked(model, reg, *overrides)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("model", "reg", "overrides"),
    [
        ("mlp", "dropconnect", []),  # reg.conv_p at its default on a model without conv layers
        ("lstm", "dropconnect", []),  # mask, inference, samples at their defaults: p acts on the LSTM
        ("cnn", "dropconnect", ["reg.conv_p=0.5"]),
        ("cnn", "spatial", ["model.fc=[]"]),  # spatial drops feature channels, which remain
        ("lstm", "dropout", ["reg.input_p=0.2"]),
        ("mlp", "dropout", ["reg.layer_p=[0.3,0.5]"]),  # p is then replaced, not idle (its own check)
        ("resnet", "droppath", []),
    ],
)
def test_settings_that_some_built_layer_takes_pass(model, reg, overrides):
    checked(model, reg, *overrides)


def test_the_cli_refuses_an_idle_setting_before_any_data_or_folder(dropbench, tmp_path):
    done = dropbench("run", "model=mlp", "reg=dropconnect", "reg.conv_p=0.3", "dataset.root=/nonexistent")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("dropbench: error: reg.conv_p=0.3 sets nothing")
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
