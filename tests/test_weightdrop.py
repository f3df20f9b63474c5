"""Weight drop (DropConnect on W_hh): masks, expectation, eval identity, gradients."""

import pytest
import torch
from torch import nn

from dropbench.regularizers.weightdrop import WeightDropLSTM, drop_weights


def test_drop_weights_fraction_and_expectation():
    torch.manual_seed(0)
    w = torch.randn(200, 300)
    dropped = drop_weights(w, 0.3)
    assert abs((dropped == 0).float().mean().item() - 0.3) < 0.01
    mean = torch.stack([drop_weights(w, 0.3) for _ in range(2000)]).mean(0)
    sigma = w.abs() * (0.3 / 0.7 / 2000) ** 0.5  # standard error of each entry's mean
    assert torch.all((mean - w).abs() <= 6 * sigma + 1e-6)
    assert drop_weights(w, 0.3, training=False) is w and drop_weights(w, 0.0) is w


def test_eval_and_p0_equal_the_plain_lstm():
    torch.manual_seed(1)
    layer = WeightDropLSTM(5, 7, p=0.5)
    plain = nn.LSTM(5, 7, batch_first=True)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 4, 5)
    assert torch.allclose(layer.eval()(x)[0], plain(x)[0], atol=1e-6)
    unmasked = WeightDropLSTM(5, 7, p=0.0)
    unmasked.load_state_dict(layer.state_dict())
    assert torch.allclose(unmasked.train()(x)[0], plain(x)[0], atol=1e-6)


def test_training_masks_recurrent_weights_and_their_gradients():
    torch.manual_seed(2)
    layer = WeightDropLSTM(5, 7, p=0.5).train()
    x = torch.randn(3, 6, 5)
    torch.manual_seed(3)
    output, (h_n, c_n) = layer(x)
    assert output.shape == (3, 6, 7) and h_n.shape == (1, 3, 7) and c_n.shape == (1, 3, 7)
    assert torch.allclose(output[:, -1], h_n[0])
    output.sum().backward()
    torch.manual_seed(3)
    kept = drop_weights(torch.ones_like(layer.weight_hh_l0), 0.5) != 0  # the same draw again
    assert torch.all(layer.weight_hh_l0.grad[~kept] == 0)  # a dropped weight gets no gradient
    assert (layer.weight_hh_l0.grad[kept] != 0).float().mean() > 0.9
    assert layer.weight_ih_l0.grad.abs().sum() > 0


def test_bad_p_is_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        WeightDropLSTM(3, 4, p=1.0)
