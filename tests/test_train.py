"""The training loop without Hydra: it learns, selects by validation, and schedules the rate."""

import math
from functools import partial

import pytest
import torch
from fakedata import fake_splits

from dropbench.models import MLP
from dropbench.regularizers import Dropout
from dropbench.schedules import constant, cosine, linear, per_step
from dropbench.tasks import Classification
from dropbench.train import FitOptions, Training, fit


@pytest.fixture(scope="module")
def data():
    return fake_splits(600, 200, val_size=100)


def train(data, epochs=4, schedule=constant):
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(64,), drop=partial(Dropout, p=0.2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * math.ceil(len(data.train_y) / 32)
    scheduler = per_step(optimizer, schedule, steps)
    rows = []
    training = Training(model, optimizer, scheduler, torch.Generator().manual_seed(0))
    result = fit(training, data, FitOptions(epochs, 32, 256), on_epoch=rows.append)
    return model, optimizer, result, rows


def test_fit_learns_the_task_and_reports_every_epoch(data):
    model, _, result, rows = train(data)
    assert rows == result.history and [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert result.final["test/acc"] > 0.5  # ten classes: chance is 0.1
    assert result.train_samples == 4 * 500 and result.train_seconds > 0


def test_test_metrics_come_from_the_best_validation_weights(data):
    model, _, result, rows = train(data)
    best = max(rows, key=lambda r: (r["val/acc"], -r["val/loss"]))
    assert result.best_epoch == best["epoch"]
    model.load_state_dict(result.best_state)
    again = Classification().evaluate(model, data.test_x, data.test_y, 256, "test")
    assert again == pytest.approx({k: result.final[k] for k in again})  # test/ adds uncertainty too
    assert {k for k in result.final if k.startswith("test/")} >= {"test/entropy", "test/entropy_wrong"}
    assert {"test_last/acc", "test_last/loss"} <= set(result.final)


def test_schedules_decay_the_rate_to_zero_by_the_last_step(data):
    assert [cosine(t) for t in (0, 0.5, 1)] == pytest.approx([1, 0.5, 0])
    assert [linear(t) for t in (0, 0.25, 1)] == pytest.approx([1, 0.75, 0])
    _, optimizer, _, _ = train(data, epochs=2, schedule=cosine)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    _, optimizer, _, _ = train(data, epochs=2, schedule=constant)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)


def test_progress_is_reported_during_an_epoch_off_a_terminal(data, monkeypatch):
    import dropbench.train as train_module

    monkeypatch.setattr(train_module, "PROGRESS_EVERY_S", 0.0)  # every step, for the test
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(16,))
    training = Training(model, torch.optim.Adam(model.parameters()), None, torch.Generator().manual_seed(0))
    calls = []
    fit(training, data, FitOptions(2, 100, 256, on_progress=lambda *a: calls.append(a)))
    steps = 5  # 500 training examples in batches of 100
    assert [(e, s, t) for e, s, t, _ in calls] == [(e, s, steps) for e in (1, 2) for s in range(1, steps + 1)]
    assert all(seconds > 0 for *_, seconds in calls)
