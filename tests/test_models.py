"""Models: shapes derived from the data, regularizer placement, eval determinism."""

from functools import partial

import pytest
import torch
from torch import nn

from dropbench.models import CNN, LSTM, MLP
from dropbench.models.lstm import image_rows
from dropbench.regularizers import Dropout, SpatialDropout

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}


@pytest.mark.parametrize("model_class", [MLP, CNN, LSTM])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_every_model_runs_on_every_image_shape(model_class, shape):
    torch.manual_seed(0)
    model = model_class(shape, num_classes=7, drop=partial(Dropout, p=0.5))
    logits = model(torch.randn(5, *shape))
    assert logits.shape == (5, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("model_class", [MLP, CNN, LSTM])
def test_regularizer_is_active_in_training_and_off_in_eval(model_class):
    torch.manual_seed(0)
    model = model_class((1, 28, 28), 10, drop=partial(Dropout, p=0.5))
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_no_regularizer_means_identity_layers():
    model = MLP((1, 28, 28), 10, hidden=(32, 16), drop=None)
    assert sum(isinstance(m, Dropout) for m in model.modules()) == 0
    assert sum(isinstance(m, nn.Identity) for m in model.modules()) == 3  # input + two hidden


def test_mlp_places_dropout_after_each_hidden_activation():
    model = MLP((1, 28, 28), 10, hidden=(32, 16), drop=partial(Dropout, p=0.5))
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert model.net[1].in_features == 784


def test_cnn_head_width_follows_the_image_shape():
    assert CNN((3, 32, 32), 10, channels=(8, 16)).head[1].in_features == 16 * 8 * 8
    assert CNN((1, 28, 28), 10, channels=(8, 16, 4)).head[1].in_features == 4 * 3 * 3
    with pytest.raises(ValueError, match="blocks"):
        CNN((1, 28, 28), 10, channels=(8,) * 6)


def test_lstm_reads_one_row_per_step():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    rows = image_rows(x)
    assert rows.shape == (2, 4, 15)  # 4 steps of 5 pixels x 3 channels
    assert torch.equal(rows[1, 2, :3], x[1, :, 2, 0])  # first pixel of row 2, all channels
    model = LSTM((3, 32, 32), 10, hidden=16, layers=2)
    assert model.rnns[0].input_size == 96 and model.rnns[1].input_size == 16


def test_bad_model_sizes_fail_clearly():
    with pytest.raises(ValueError, match="model.hidden"):
        MLP((1, 28, 28), 10, hidden=())
    with pytest.raises(ValueError, match="model.layers"):
        LSTM((1, 28, 28), 10, layers=0)


def test_regularizer_slots_place_layers_where_the_model_has_them():
    drop = partial(Dropout, p=0.5)
    mlp = MLP((1, 28, 28), 10, hidden=(16, 8), input_drop=partial(Dropout, p=0.2), drop=drop)
    assert isinstance(mlp.input_drop, Dropout) and mlp.input_drop.p == 0.2
    cnn = CNN((3, 32, 32), 10, channels=(4, 8), channel_drop=drop, input_drop=drop)
    assert [type(block[1]).__name__ for block in cnn.features] == ["Dropout", "Dropout"]
    made = []

    def linear(n_in, n_out):
        made.append((n_in, n_out))
        return nn.Linear(n_in, n_out)

    MLP((1, 28, 28), 10, hidden=(16, 8), linear=linear)
    assert made == [(784, 16), (16, 8)]  # hidden layers only: the output layer stays plain
    lstm = LSTM((1, 28, 28), 10, hidden=8, layers=2, rnn=partial(nn.GRU, batch_first=True))
    assert [type(r).__name__ for r in lstm.rnns] == ["GRU", "GRU"]


def test_lstm_channel_drop_removes_whole_input_features_for_the_whole_sequence():
    torch.manual_seed(7)
    model = LSTM((1, 28, 28), 10, hidden=8, channel_drop=partial(SpatialDropout, p=0.5)).train()
    x = torch.randn(6, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    # row-pixel j of every row is input feature j: its gradient is zero at all 28 steps or at none
    per_feature = (x.grad[:, 0] != 0).any(dim=1)  # (N, features): used at some step
    everywhere = (x.grad[:, 0] != 0).all(dim=1)
    assert torch.equal(per_feature, everywhere)
    assert 0 < per_feature.float().mean() < 1


def test_cnn_runs_channels_last_with_the_same_results_as_nchw():
    torch.manual_seed(0)
    model = CNN((3, 32, 32), 10, channels=(4, 8), fc=(16,))
    assert model.features[0][0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(5, 3, 32, 32)
    nchw = CNN((3, 32, 32), 10, channels=(4, 8), fc=(16,))
    nchw.load_state_dict(model.state_dict())
    nchw.to(memory_format=torch.contiguous_format)
    expected = nchw.head(nchw.features(x))  # the forward pass without the layout change
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    model(x).sum().backward()  # gradients flow through the layout change
    assert model.features[0][0][0].weight.grad is not None
