"""Resuming without Hydra: a run stopped after any epoch ends exactly as an uninterrupted one."""

import json
import math
from functools import partial

import pytest
import torch
from fakedata import fake_splits

from dropbench.atomic import write_json_atomic
from dropbench.errors import ConfigError
from dropbench.models import MLP
from dropbench.regularizers import Dropout
from dropbench.resume import RunLock, load_checkpoint, save_checkpoint
from dropbench.rundir import RunDir
from dropbench.schedules import cosine, per_step
from dropbench.schema import config_conflict, result_defining
from dropbench.train import FitOptions, FitState, Training, fit

EPOCHS = 4
CONFIG = {"p": 0.3, "epochs": EPOCHS, "reg": {"form": "inverted"}, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    # augment=True: the data generator drives crops and flips too, so its state must resume
    return fake_splits(400, 100, val_size=80, augment=True)


def build(data):
    """A fresh model, optimizer, schedule and data generator, as a new process would build them."""
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(48,), drop=partial(Dropout, p=0.3))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = per_step(optimizer, cosine, EPOCHS * math.ceil(len(data.train_y) / 32))
    return Training(model, optimizer, scheduler, torch.Generator().manual_seed(0))


def run_fit(data, training, state=None, on_checkpoint=None):
    return fit(training, data, FitOptions(EPOCHS, 32, 128), state=state, on_checkpoint=on_checkpoint)


class Stop(Exception):
    """Stands in for Ctrl-C after a given epoch's checkpoint."""


@pytest.mark.parametrize("stop_after", [1, 3])
def test_resumed_fit_ends_with_exactly_the_uninterrupted_metrics(data, tmp_path, stop_after):
    uninterrupted = run_fit(data, build(data))

    path = tmp_path / "checkpoint.pt"
    parts = build(data)

    def save_then_maybe_stop(state: FitState) -> None:
        save_checkpoint(path, CONFIG, state, parts)
        if state.epoch == stop_after:
            raise Stop

    with pytest.raises(Stop):
        run_fit(data, parts, on_checkpoint=save_then_maybe_stop)
    torch.manual_seed(1234)  # a new process: the global RNG is elsewhere until the checkpoint restores it
    fresh = build(data)
    state = load_checkpoint(path, CONFIG, fresh)
    assert state.epoch == stop_after and len(state.history) == stop_after
    resumed = run_fit(data, fresh, state=state)

    def strip(history):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]

    assert strip(resumed.history) == strip(uninterrupted.history)
    assert resumed.final == uninterrupted.final and resumed.best_epoch == uninterrupted.best_epoch


def test_a_checkpoint_of_another_config_is_refused_by_name(data, tmp_path):
    path = tmp_path / "checkpoint.pt"
    parts = build(data)
    save_checkpoint(path, CONFIG, FitState(epoch=1), parts)
    with pytest.raises(ConfigError, match=r"p: 0.3 there, 0.5 now.*force=true"):
        load_checkpoint(path, {**CONFIG, "p": 0.5}, build(data))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_checkpoint(path, CONFIG, build(data))


def test_result_defining_settings_ignore_where_and_how_fast_but_not_what():
    base = {"p": 0.5, "epochs": 3, "device": "cpu", "threads": 2, "dataset": {"root": "/a", "val_size": 10}}
    moved = {**base, "device": "cuda", "threads": 1, "dataset": {"root": "/b", "val_size": 10}}
    assert config_conflict(result_defining(base, True), result_defining(moved, True)) is None
    other = {**base, "epochs": 4}
    assert (
        config_conflict(result_defining(base, True), result_defining(other, True)) == "epochs: 3 there, 4 now"
    )
    other_p = {**base, "p": 0.1}
    assert config_conflict(result_defining(base, True), result_defining(other_p, True)) is not None
    assert config_conflict(result_defining(base, False), result_defining(other_p, False)) is None  # reg=none


def test_run_lock_is_exclusive_and_released(tmp_path):
    first, second = RunLock(RunDir(tmp_path / "run")), RunLock(RunDir(tmp_path / "run"))
    assert first.acquire()
    assert not second.acquire()  # flock locks are per open file: a second holder is refused
    first.release()
    assert second.acquire()
    second.release()


def test_json_records_store_non_finite_numbers_as_null(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"history": [{"train/loss": math.nan, "train/acc": math.inf, "epoch": 1}]})
    assert json.loads(path.read_text()) == {"history": [{"train/loss": None, "train/acc": None, "epoch": 1}]}
    assert "NaN" not in path.read_text()


def test_a_diverging_fit_stops_early_and_reports_where(data):
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(48,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e12)
    training = Training(model, optimizer, None, torch.Generator().manual_seed(0))
    result = fit(training, data, FitOptions(5, 32, 128))
    assert result.diverged == {"epoch": 1, "metric": "train/loss"}
    assert len(result.history) == 1 and result.final == {}


def test_stale_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    for name in (
        ".metrics.json.x1.tmp",
        ".checkpoint.pt.y2.tmp",
        "metrics.json",
        "checkpoint.pt",
        "notes.tmp",
    ):
        (run_dir.path / name).write_text("x")
    removed = run_dir.remove_stale_temporaries()
    assert sorted(p.name for p in removed) == [".checkpoint.pt.y2.tmp", ".metrics.json.x1.tmp"]
    assert sorted(p.name for p in run_dir.path.iterdir()) == ["checkpoint.pt", "metrics.json", "notes.tmp"]


def test_resuming_under_another_thread_count_says_the_last_bits_may_differ(data, tmp_path, capsys):
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        save_checkpoint(path, CONFIG, FitState(epoch=1), build(data))
        load_checkpoint(path, CONFIG, build(data))
        assert capsys.readouterr().err == ""  # the same count: nothing to say
        torch.set_num_threads(2)
        load_checkpoint(path, CONFIG, build(data))
    finally:
        torch.set_num_threads(before)
    [line] = capsys.readouterr().err.splitlines()
    assert "resuming with 2 threads after 1" in line and "last bits" in line
