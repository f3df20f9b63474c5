"""The reconstruction task and the dropout autoencoder: loss and metrics on constructed cases,
regularizer placement, and a run and a report end to end."""

import json

import pytest
import torch
from fakedata import fake_splits
from tinyrun import TINY, run_dirs
from torch import nn

from dropbench.build import build_training, check_config, compose_config
from dropbench.combinations import check_combination
from dropbench.errors import ConfigError
from dropbench.models import Autoencoder
from dropbench.regularizers import DropConnectLinear, Dropout, apply_max_norm, hidden_weights
from dropbench.tasks import Classification, Reconstruction, task_of


@pytest.fixture(scope="module")
def splits():
    return fake_splits(64, 16, val_size=16)


class Zeros(nn.Module):
    """Logits 0: every pixel reconstructed as 0.5."""

    def forward(self, x):
        return torch.zeros_like(x)


class Echo(nn.Module):
    """Returns fixed logits: the logit of the true pixels, so the reconstruction is perfect."""

    def __init__(self, task: Reconstruction) -> None:
        super().__init__()
        self.task = task

    def forward(self, x):
        return torch.logit(self.task.pixels(x), eps=1e-6)


def test_reconstruction_targets_the_input_pixels_and_scores_a_perfect_copy_as_zero_error(splits):
    task = Reconstruction("mse").bind(splits)
    pixels = task.pixels(splits.val_x)
    assert pixels.min() >= 0 and pixels.max() <= 1 and pixels.std() > 0.1  # the normalisation undone
    perfect = task.evaluate(Echo(task), splits.val_x, splits.val_y, 8, "val")
    assert perfect["val/mse"] < 1e-9 and perfect["val/loss"] < 1e-9
    zeros = task.evaluate(Zeros(), splits.val_x, splits.val_y, 8, "val")
    # logits 0 reconstruct every pixel as 0.5: the MSE is the mean of (pixel - 0.5)^2
    assert zeros["val/mse"] == pytest.approx(float((pixels - 0.5).square().mean()), rel=1e-5)
    bce = Reconstruction("bce").bind(splits).evaluate(Zeros(), splits.val_x, splits.val_y, 8, "v")
    assert bce["v/loss"] == pytest.approx(float(torch.log(torch.tensor(2.0))), rel=1e-5)  # BCE at 0.5


def test_the_best_epoch_of_a_reconstruction_is_its_lowest_validation_loss():
    rows = [{"val/loss": 0.3, "val/mse": 0.1}, {"val/loss": 0.2, "val/mse": 0.2}]
    assert max(rows, key=Reconstruction().selection_key) == rows[1]
    with pytest.raises(ValueError, match="model.loss='l1'.*valid: bce, mse"):
        Reconstruction("l1")


def test_the_autoencoder_is_784_256_784_with_dropout_after_the_hidden_activation(splits):
    cfg = compose_config(["model=autoencoder", "reg=dropout", "p=0.5", "reg.input_p=0.2", "device=cpu"])
    training = build_training(cfg, check_config(cfg), splits)
    model = training.model
    assert isinstance(training.task, Reconstruction) and training.task.loss_name == "bce"
    assert (model.encoder.in_features, model.encoder.out_features, model.decoder.out_features) == (
        784,
        256,
        784,
    )
    assert isinstance(model.drop, Dropout) and model.drop.p == 0.5 and model.input_drop.p == 0.2
    x = splits.test_x[:4]
    assert model(x).shape == x.shape
    model.eval()
    assert torch.equal(model(x), model(x))  # identity regularizers in eval
    assert task_of(nn.Linear(2, 2)).name == Classification.name  # a model without a task classifies


def test_dropconnect_builds_encoder_and_decoder_and_max_norm_spares_the_decoder(splits):
    cfg = compose_config(["model=autoencoder", "model.hidden=32", "reg=dropconnect", "device=cpu"])
    model = build_training(cfg, check_config(cfg), splits).model
    assert isinstance(model.encoder, DropConnectLinear) and isinstance(model.decoder, DropConnectLinear)
    plain = Autoencoder((1, 4, 4), 10, hidden=8)
    with torch.no_grad():
        plain.decoder.weight.mul_(100)
    before = plain.decoder.weight.clone()
    apply_max_norm(hidden_weights(plain), 0.1)
    assert plain.encoder.weight.norm(dim=1).max() <= 0.1 + 1e-6
    assert torch.equal(plain.decoder.weight, before)  # output units are not hidden


def test_regs_without_a_place_in_the_autoencoder_are_refused_in_one_line():
    for reg in ("spatial", "variational", "naive", "conv_dropout"):
        with pytest.raises(ConfigError, match=rf"^reg={reg} does not apply to model=autoencoder: .*use reg="):
            check_combination("autoencoder", reg)
    cfg = compose_config(["model=autoencoder", "reg=dropout", "eval.mc_samples=5", "device=cpu"])
    with pytest.raises(ConfigError, match="MC averaging is for classifiers"):
        build_training(cfg, check_config(cfg), fake_splits(16, 8, val_size=8))


def test_an_autoencoder_sweep_runs_and_reports_its_reconstructions_and_weight_maps(dropbench, tmp_path):
    done = dropbench("run", "-m", "model=autoencoder", "model.hidden=16", "reg=none,dropout", "p=0.5", *TINY)
    assert done.returncode == 0, done.stderr
    folders = run_dirs(tmp_path / "results")
    assert len(folders) == 2
    for folder in folders:
        record = json.loads((folder / "metrics.json").read_text())
        assert record["task"] == "reconstruction" and record["status"] == "finished"
        assert {"train/mse", "val/mse", "test/mse", "test/loss", "test_last/mse"} <= set(record["final"])
        assert "test/acc" not in record["final"] and "val/mse" in record["best"]
        saved = torch.load(folder / "reconstructions.pt", weights_only=True)
        assert saved["originals"].shape == saved["reconstructions"].shape == (16, 1, 28, 28)
    report = dropbench("report", str(tmp_path / "results"), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "test mse (×10⁻³)" in text and "p chosen by mean validation loss" in text
    for stem in ("main.csv", "reconstructions.png", "weights.png", "curves.png"):
        assert (tmp_path / "report" / f"mnist_autoencoder_{stem}").is_file(), stem


def test_a_dropconnect_decoder_emits_logits_so_reconstructions_can_be_dark(splits):
    """DropConnect's factory carries the hidden units' ReLU; the decoder must not apply it, or
    every logit is >= 0 and every reconstructed pixel >= 0.5."""
    cfg = compose_config(["model=autoencoder", "model.hidden=32", "reg=dropconnect", "device=cpu"])
    model = build_training(cfg, check_config(cfg), splits).model.eval()
    assert model.encoder.activation is not None and model.decoder.activation is None
    with torch.no_grad():
        model.decoder.bias.fill_(-5.0)
        logits = model(splits.test_x[:4])
    assert (logits < 0).any()
