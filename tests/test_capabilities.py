"""Training capabilities beyond the regularizer: the L1 penalty, early stopping, the activation,
dropout's place around it, and batch normalisation."""

from functools import partial

import pytest
import torch
from fakedata import fake_splits

from dropbench.build import build_model, build_training, check_config, compose_config
from dropbench.models import CNN, MLP
from dropbench.record import finished_details
from dropbench.regularizers import Dropout, l1_penalty, penalised_weights
from dropbench.resume import load_checkpoint, save_checkpoint
from dropbench.schedules import constant, per_step
from dropbench.tasks import Classification
from dropbench.train import FitOptions, FitState, Training, fit


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


class ScriptedValidation(Classification):
    """A classifier whose validation selection key follows a script, one value per epoch."""

    def __init__(self, keys):
        self.keys = keys

    def selection_key(self, row):
        return (self.keys[int(row["epoch"]) - 1],)


#: best at epoch 2, then no better: with patience 3 the fit stops after epoch 5 of 8
SCRIPT = [1.0, 3.0, 2.0, 3.0, 2.5, 4.0, 5.0, 6.0]
EPOCHS, PATIENCE = 8, 3


def scripted(data):
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(16,), drop=partial(Dropout, p=0.3))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = per_step(optimizer, constant, EPOCHS * 6)
    return Training(model, optimizer, scheduler, torch.Generator().manual_seed(0), ScriptedValidation(SCRIPT))


class Stop(Exception):
    """Stands in for Ctrl-C after a given epoch's checkpoint."""


def test_early_stopping_stops_n_epochs_after_the_best_and_tests_the_best_weights(data):
    training = scripted(data)
    rows = []
    result = fit(training, data, FitOptions(EPOCHS, 50, 256, patience=PATIENCE), on_epoch=rows.append)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5] and rows == result.history
    assert result.best_epoch == 2 and result.early_stop == {"epoch": 5, "best_epoch": 2, "patience": 3}
    assert result.train_samples == 5 * len(data.train_y)
    for name, tensor in training.model.state_dict().items():  # tested: the best epoch's weights
        assert torch.equal(tensor, result.best_state[name]), name
    again = Classification().evaluate(training.model, data.test_x, data.test_y, 256, "test")
    assert again == pytest.approx({k: result.final[k] for k in again})
    assert result.final["test_last/acc"] >= 0  # the last (epoch 5) weights are tested too
    record = finished_details(result, 1.0, "acc")
    assert record["early_stop"] == {"epoch": 5, "best_epoch": 2, "patience": 3}
    assert record["best"]["epoch"] == 2
    unstopped = fit(scripted(data), data, FitOptions(EPOCHS, 50, 256))
    assert len(unstopped.history) == EPOCHS and unstopped.early_stop is None
    assert "early_stop" not in finished_details(unstopped, 1.0, "acc")


@pytest.mark.parametrize("stop_after", [3, 4])
def test_a_resumed_run_keeps_its_patience_and_stops_at_the_same_epoch(data, tmp_path, stop_after):
    options = FitOptions(EPOCHS, 50, 256, patience=PATIENCE)
    uninterrupted = fit(scripted(data), data, options)
    path, config = tmp_path / "checkpoint.pt", {"patience": PATIENCE}
    parts = scripted(data)

    def save_then_stop(state: FitState) -> None:
        save_checkpoint(path, config, state, parts)
        if state.epoch == stop_after:
            raise Stop

    with pytest.raises(Stop):
        fit(parts, data, options, on_checkpoint=save_then_stop)
    fresh = scripted(data)
    state = load_checkpoint(path, config, fresh)
    assert state.epoch == stop_after and state.epochs_since_best == stop_after - 2
    resumed = fit(fresh, data, options, state=state)
    assert resumed.early_stop == uninterrupted.early_stop == {"epoch": 5, "best_epoch": 2, "patience": 3}
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]

    def strip(history):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]

    assert strip(resumed.history) == strip(uninterrupted.history)
    assert repr(resumed.final) == repr(uninterrupted.final)  # exact, NaN (no wrong answer) included


def kinds(model):
    return [type(m).__name__ for m in model.modules()]


@pytest.mark.parametrize(
    "activation, module", [("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh), ("sigmoid", torch.nn.Sigmoid)]
)
def test_the_mlp_and_the_cnn_use_the_activation_they_are_given(activation, module):
    mlp = MLP((1, 8, 8), 3, hidden=(5, 6), activation=activation)
    cnn = CNN((1, 8, 8), 3, channels=(2, 4), fc=(5,), activation=activation)
    for model, count in ((mlp, 2), (cnn, 3)):
        found = [
            m for m in model.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid))
        ]
        assert len(found) == count and all(type(m) is module for m in found), kinds(model)
    with pytest.raises(
        ValueError, match=r"^model\.activation='gelu' is invalid; valid: relu, tanh, sigmoid$"
    ):
        MLP((1, 8, 8), 3, hidden=(5,), activation="gelu")


def test_the_default_models_keep_their_layers_and_state_dict_keys():
    assert list(MLP((1, 8, 8), 3, hidden=(5, 6)).state_dict()) == [
        f"net.{i}.{k}" for i in (1, 4, 7) for k in ("weight", "bias")
    ]
    cnn = CNN((1, 8, 8), 3, channels=(2,), fc=(5,))
    assert [k for k in cnn.state_dict() if k.startswith("features")] == [
        "features.0.0.0.weight",
        "features.0.0.0.bias",
    ]
    assert kinds(cnn.features[0][0]) == ["Sequential", "Conv2d", "ReLU", "MaxPool2d"]


def test_dropconnect_layers_apply_the_model_s_activation_and_none_follows_them(data):
    cfg = compose_config(["device=cpu", "model.hidden=[16]", "reg=dropconnect", "model.activation=tanh"])
    model = build_model(cfg, check_config(cfg), data)
    layer, after = model.net[1], model.net[2]
    assert layer.activation is torch.tanh and isinstance(after, torch.nn.Identity)
    cfg = compose_config(["device=cpu", "model.hidden=[16]", "reg=dropconnect"])
    assert build_model(cfg, check_config(cfg), data).net[1].activation is torch.relu


def placed(place, activation):
    torch.manual_seed(0)
    return MLP(
        (1, 4, 4), 3, hidden=(32, 32), drop=partial(Dropout, p=0.5, place=place), activation=activation
    )


def masked_output(model, x):
    torch.manual_seed(7)  # the same masks in both models: the same shapes, drawn in the same order
    return model.train()(x)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_dropout_before_the_activation_differs_for_tanh_and_not_for_relu(activation):
    after, before = placed("after", activation), placed("before", activation)
    assert isinstance(before.net[2], Dropout) and isinstance(after.net[3], Dropout)
    x = torch.randn(64, 1, 4, 4)
    a, b = masked_output(after, x), masked_output(before, x)
    if activation == "relu":  # relu(m * x / (1-p)) = m * relu(x) / (1-p): a non-negative scaling commutes
        assert torch.equal(a, b)
    else:
        assert not torch.allclose(a, b)
    assert torch.equal(after.eval()(x), before.eval()(x))  # inverted dropout: identity in eval mode


def test_dropout_before_the_activation_is_refused_where_a_model_has_no_such_place():
    from dropbench.models import LSTM

    with pytest.raises(ValueError, match=r"^reg\.place=before: the LSTM .*use reg\.place=after$"):
        LSTM((1, 4, 4), 3, hidden=4, drop=partial(Dropout, p=0.5, place="before"))
    with pytest.raises(ValueError, match=r"^place='middle' is invalid; valid: after, before$"):
        Dropout(0.5, place="middle")


def test_batch_norm_sits_between_each_hidden_layer_and_its_activation():
    mlp = MLP((1, 4, 4), 3, hidden=(8, 8), norm="batch", drop=partial(Dropout, p=0.5))
    names = [type(m).__name__ for m in mlp.net]
    assert names == ["Flatten", *["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2, "Linear"]
    cnn = CNN((1, 8, 8), 3, channels=(2, 4), fc=(5,), norm="batch", activation="tanh")
    assert kinds(cnn.features[0][0]) == ["Sequential", "Conv2d", "BatchNorm2d", "Tanh", "MaxPool2d"]
    assert [type(m).__name__ for m in cnn.head][1:4] == ["Linear", "BatchNorm1d", "Tanh"]
    with pytest.raises(ValueError, match=r"^model\.norm=batch .*DropConnect.*use model\.norm=none$"):
        from dropbench.regularizers import DropConnectLinear

        MLP((1, 4, 4), 3, hidden=(8,), norm="batch", linear=partial(DropConnectLinear, activation=torch.relu))


def test_mc_dropout_keeps_batch_norm_in_eval_mode(data):
    from dropbench.tasks import predict

    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(16,), norm="batch", drop=partial(Dropout, p=0.5))
    model.train()(data.train_x[:100])  # running statistics away from their initial values
    norm = model.net[2]
    stats = (norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked))
    modes = []
    norm.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    predict(model, data.test_x, 32, samples=4)
    assert modes and not any(modes)  # every pass normalised with the running statistics
    assert torch.equal(norm.running_mean, stats[0]) and torch.equal(norm.running_var, stats[1])
    assert int(norm.num_batches_tracked) == stats[2]
    log_probs, _ = predict(model, data.test_x, 32, samples=4)
    again, _ = predict(model, data.test_x, 32, samples=4)
    assert not torch.equal(log_probs, again)  # the dropout masks did vary


def test_the_new_settings_run_end_to_end_and_are_recorded(dropbench, tmp_path):
    import json

    from tinyrun import SMALL_MODEL, TINY, run_dirs

    done = dropbench(
        "run", *SMALL_MODEL["mlp"], *TINY, "epochs=3", "patience=1", "l1=1e-4", "wd=1e-4",
        "model.activation=tanh", "model.norm=batch", "reg.place=before", "eval.mc_samples=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "finished" and "test_mc/acc" in record["final"]
    assert (record["config"]["l1"], record["config"]["patience"]) == (1e-4, 1)
    resolved = record["resolved_config"]
    assert (resolved["model"]["activation"], resolved["model"]["norm"], resolved["reg"]["place"]) == (
        "tanh",
        "batch",
        "before",
    )
    stopped = record.get("early_stop")
    assert stopped is None or stopped["epoch"] == stopped["best_epoch"] + 1 == len(record["history"])
