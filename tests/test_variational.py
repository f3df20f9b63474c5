"""Variational LSTM dropout: drop-in for nn.LSTM, exact gradients, time-locked masks vs per-step ones."""

import pytest
import torch
from torch import nn

from dropbench.regularizers.variational import (
    LSTMMasks,
    NaiveDropoutLSTM,
    VariationalLSTM,
    sequence_mask,
    variational_lstm,
    variational_masks,
)

N, T, F, H = 6, 5, 4, 3


def reference_lstm(x, lstm, masks, hx=None):
    """The variational LSTM written step by step with autograd (the paper's equations)."""
    h, c = (x.new_zeros(x.shape[0], H),) * 2 if hx is None else (hx[0][0], hx[1][0])
    x = x * masks.input.unsqueeze(1)
    outputs = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ lstm.weight_ih_l0.t() + lstm.bias_ih_l0 + lstm.bias_hh_l0
        i, f, g, o = (gates + (h * masks.hidden) @ lstm.weight_hh_l0.t()).chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        outputs.append(h)
    return torch.stack(outputs, 1) * masks.output.unsqueeze(1), (h[None], c[None])


def weights(lstm):
    return lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0


def test_shapes_and_state_dict_match_nn_lstm():
    layer = VariationalLSTM(F, H, 0.3, 0.3, 0.3)
    assert layer.state_dict().keys() == nn.LSTM(F, H, batch_first=True).state_dict().keys()
    for mode in (layer.train(), layer.eval()):
        out, (h_n, c_n) = mode(torch.randn(N, T, F))
        assert out.shape == (N, T, H) and h_n.shape == c_n.shape == (1, N, H)
    out, (h_n, c_n) = NaiveDropoutLSTM(F, H, 0.3, 0.3)(torch.randn(N, T, F))
    assert out.shape == (N, T, H) and h_n.shape == c_n.shape == (1, N, H)
    assert VariationalLSTM.stochastic and NaiveDropoutLSTM.stochastic
    with torch.no_grad():  # MC dropout: masks drawn at test time, no graph
        assert layer.train()(torch.randn(N, T, F))[0].shape == (N, T, H)


def test_eval_mode_and_p0_are_the_fused_nn_lstm():
    torch.manual_seed(0)
    ref = nn.LSTM(F, H, batch_first=True)
    x = torch.randn(N, T, F)
    expected = ref(x)
    for layer in (VariationalLSTM(F, H, 0.5, 0.5, 0.5).eval(), VariationalLSTM(F, H).train()):
        layer.load_state_dict(ref.state_dict())
        out, (h_n, c_n) = layer(x)
        assert torch.equal(out, expected[0]) and torch.equal(h_n, expected[1][0])
        assert torch.equal(c_n, expected[1][1])
    naive = NaiveDropoutLSTM(F, H, 0.5, 0.5).eval()
    naive.load_state_dict(ref.state_dict())
    assert torch.equal(naive(x)[0], expected[0])


def test_unmasked_training_path_equals_nn_lstm_with_its_gradients():
    torch.manual_seed(1)
    ref = nn.LSTM(F, H, batch_first=True)
    x = torch.randn(N, T, F, requires_grad=True)
    hx = (torch.randn(1, N, H, requires_grad=True), torch.randn(1, N, H, requires_grad=True))

    def run(fn):
        ref.zero_grad()
        x.grad = hx[0].grad = hx[1].grad = None
        out, (h_n, c_n) = fn()
        (out.sin().sum() + h_n.cos().sum() + c_n.square().sum()).backward()
        tensors = [out, h_n, c_n, x.grad, *hx[0].grad, *hx[1].grad, *(w.grad for w in weights(ref))]
        return [t.detach().clone() for t in tensors]

    expected = run(lambda: ref(x, hx))
    got = run(lambda: variational_lstm(x, *weights(ref), LSTMMasks(None, None, None), hx))
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_hand_written_backward_passes_gradcheck_with_all_masks():
    torch.manual_seed(2)
    lstm = nn.LSTM(2, H, batch_first=True).double()
    masks = variational_masks(3, 2, H, 0.4, 0.4, 0.4, dtype=torch.float64)
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    hx = [torch.randn(1, 3, H, dtype=torch.float64, requires_grad=True) for _ in range(2)]

    def f(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        out, (h_n, c_n) = variational_lstm(x, w_ih, w_hh, b_ih, b_hh, masks, (h0, c0))
        return out, h_n, c_n

    assert torch.autograd.gradcheck(f, (x, *weights(lstm), *hx))


@pytest.mark.parametrize("used", ["output", "h_n", "c_n"])  # unused outputs reach the backward as None
def test_masked_forward_and_gradients_match_the_step_by_step_reference(used):
    torch.manual_seed(3)
    layer = VariationalLSTM(F, H, 0.3, 0.3, 0.3)
    x = torch.randn(N, T, F, requires_grad=True)
    out, (h_n, c_n) = layer(x)
    expected, (h_ref, c_ref) = reference_lstm(x, layer, layer.last_masks)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(h_n, h_ref, atol=1e-6) and torch.allclose(c_n, c_ref, atol=1e-6)

    def gradients(outputs):
        layer.zero_grad()
        x.grad = None
        dict(zip(["output", "h_n", "c_n"], outputs, strict=True))[used].sin().sum().backward()
        return [x.grad.clone(), *(w.grad.clone() for w in weights(layer))]

    for got, want in zip(gradients((out, h_n, c_n)), gradients((expected, h_ref, c_ref)), strict=True):
        assert torch.allclose(got, want, atol=1e-5)
        assert got.abs().sum() > 0  # the gradient reaches every parameter


def test_masks_are_one_per_sequence_and_drop_fraction_p():
    torch.manual_seed(4)
    layer = VariationalLSTM(28, 64, 0.25, 0.5, 0.1)
    layer(torch.randn(512, 3, 28))
    masks = layer.last_masks
    assert masks.input.shape == (512, 28) and masks.hidden.shape == masks.output.shape == (512, 64)
    for mask, p in zip(masks, (0.25, 0.5, 0.1), strict=True):
        values = mask.unique()
        assert (
            len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx(1 / (1 - p), rel=1e-4)
        )
        assert abs((mask == 0).float().mean().item() - p) < 0.02  # >= 14k draws: > 6 sigma
        assert len({tuple(row.tolist()) for row in mask}) > 500  # sequences draw their own masks
    first = masks.input.clone()
    layer(torch.randn(512, 3, 28))
    assert not torch.equal(first, layer.last_masks.input)  # and every forward draws anew


def test_masks_preserve_the_expectation():
    torch.manual_seed(5)
    mask = sequence_mask(50000, 8, 0.4)
    assert torch.allclose(mask.mean(0), torch.ones(8), atol=0.02)
    assert sequence_mask(4, 8, 0.0) is None
    assert variational_masks(4, 2, 3, 0.0, 0.5, 0.0).input is None


def test_a_dropped_input_feature_is_dropped_at_every_step():
    torch.manual_seed(6)
    x = torch.randn(32, 10, F, requires_grad=True)
    layer = VariationalLSTM(F, H, p_input=0.5)
    out, _ = layer(x)
    out.sum().backward()
    dropped = layer.last_masks.input == 0  # (N, F)
    assert dropped.any() and (~dropped).any()
    assert torch.equal(x.grad == 0, dropped.unsqueeze(1).expand_as(x))


def test_a_dropped_recurrent_unit_never_feeds_the_recurrence():
    torch.manual_seed(7)
    layer = VariationalLSTM(F, 16, p_hidden=0.5)
    layer(torch.randn(1, 12, F))[0].sum().backward()
    dropped = layer.last_masks.hidden[0] == 0  # one sequence: h_(t-1)[j] is zero at every step
    assert dropped.any() and (~dropped).any()
    column_used = layer.weight_hh_l0.grad.abs().sum(0) > 0
    assert torch.equal(column_used, ~dropped)


def test_a_dropped_output_unit_is_zero_at_every_step():
    torch.manual_seed(8)
    layer = VariationalLSTM(F, H, p_output=0.5)
    out, _ = layer(torch.randn(32, T, F))
    dropped = layer.last_masks.output == 0
    assert torch.equal(out == 0, dropped.unsqueeze(1).expand_as(out))


def test_naive_masks_change_from_step_to_step():
    torch.manual_seed(9)
    x = torch.randn(32, 10, F, requires_grad=True)
    out, _ = NaiveDropoutLSTM(F, H, p_input=0.5, p_output=0.5)(x)
    out.sum().backward()
    for dropped in (x.grad == 0, out == 0):
        assert 0.4 < dropped.float().mean().item() < 0.6
        constant_over_time = (dropped == dropped[:, :1]).all(1)
        assert constant_over_time.float().mean().item() < 0.05  # time-locked would be 1.0


def test_hidden_state_can_be_passed_in():
    torch.manual_seed(10)
    layer = VariationalLSTM(F, H, 0.3, 0.3, 0.3)
    x, hx = torch.randn(N, T, F), (torch.randn(1, N, H), torch.randn(1, N, H))
    out, _ = layer(x, hx)
    assert torch.allclose(out, reference_lstm(x, layer, layer.last_masks, hx)[0], atol=1e-6)


def test_bad_arguments_are_rejected():
    for bad in (1.0, -0.1, "0.5", None):
        for kwargs in ({"p_input": bad}, {"p_hidden": bad}, {"p_output": bad}):
            with pytest.raises(ValueError, match=r"\[0, 1\)"):
                VariationalLSTM(F, H, **kwargs)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            NaiveDropoutLSTM(F, H, p_output=bad)
    with pytest.raises(ValueError, match=r"\(N, T, F\)"):
        VariationalLSTM(F, H, p_hidden=0.5)(torch.randn(T, F))


def test_repr_names_the_drop_probabilities():
    assert "p_input=0.1, p_hidden=0.2, p_output=0.3" in repr(VariationalLSTM(F, H, 0.1, 0.2, 0.3))
    assert "batch_first=True" in repr(NaiveDropoutLSTM(F, H, 0.1, 0.2))
