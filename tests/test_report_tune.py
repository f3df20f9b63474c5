"""``dropbench report --tune KEY``: a setting chosen on validation together with p (the fair
best-p protocol's second grid axis, e.g. variational dropout's recurrent rate), so the method
gets one row at its best (p, setting) instead of one row per setting."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_report import record, write_run

from dropbench.errors import DropbenchError
from dropbench.report.build import Options, make_report

#: (reg, p, mask) -> (test acc, val acc): validation prefers mask=batch at p=0.2, test prefers
#: mask=example at p=0.5, so a choice made by test (or per mask) would differ
GRID = {
    ("none", None, None): (0.970, 0.970),
    ("dropconnect", 0.2, "example"): (0.974, 0.976),
    ("dropconnect", 0.5, "example"): (0.985, 0.978),
    ("dropconnect", 0.2, "batch"): (0.979, 0.984),
    ("dropconnect", 0.5, "batch"): (0.972, 0.975),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for (reg, p, mask), (test, val) in GRID.items():
        settings = {"mask": mask} if mask else {}
        for seed in range(3):
            write_run(root / f"{reg}_{mask}_p{p}_seed{seed}", record(reg, p, settings, 0.0, seed, test, val))
    return root


def best_rows(out) -> pd.DataFrame:
    return pd.read_csv(out.folder / "mnist_mlp_best_p.csv")


def test_without_tune_each_setting_is_its_own_method(sweep, tmp_path):
    best = best_rows(make_report([sweep], tmp_path / "plain", Options()))
    assert list(best["label"]) == ["none", "dropconnect (mask=batch)", "dropconnect (mask=example)"]
    assert list(best["p"].fillna(-1)) == [-1, 0.2, 0.5]
    assert "family" not in pd.read_csv(tmp_path / "plain" / "runs.csv")


def test_a_tuned_setting_is_chosen_on_validation_with_p(sweep, tmp_path):
    out = make_report([sweep], tmp_path / "tuned", Options(tune=("reg.mask",)))
    best = best_rows(out)
    assert list(best["family"]) == ["none", "dropconnect"]  # one row for the method
    chosen = best.iloc[1]
    assert (chosen["label"], chosen["p"], chosen["tuned"]) == ("dropconnect (mask=batch)", 0.2, "mask=batch")
    shown = (out.folder / "mnist_mlp_best_p.md").read_text()
    assert re.search(r"\| dropconnect +\| 0.2, mask=batch +\|", shown)
    paired = pd.read_csv(out.folder / "mnist_mlp_paired.csv")
    assert list(paired["comparison"]) == ["dropconnect (mask=batch), p=0.2 vs none"]  # one test, not two
    main = (out.folder / "mnist_mlp_main.md").read_text()
    assert "dropconnect (mask=example)" in main  # every setting keeps its rows in the main table
    runs = pd.read_csv(out.folder / "runs.csv")
    assert set(runs["family"]) == {"none", "dropconnect"}


def test_an_unknown_tune_key_is_one_line_naming_the_choices(sweep, tmp_path):
    message = r"--tune 'reg.masks' is not a setting of these runs; choose from .*reg\.mask"
    with pytest.raises(DropbenchError, match=message):
        make_report([sweep], tmp_path / "bad", Options(tune=("reg.masks",)))
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    """none and dropout at two training-set sizes; validation prefers p=0.2 at 100 examples and
    p=0.5 at 1000, and dropout beats none only at 1000."""
    root = tmp_path_factory.mktemp("sized")
    grid = {
        (100, "none", None): (0.90, 0.90),
        (100, "dropout", 0.2): (0.89, 0.89),
        (100, "dropout", 0.5): (0.85, 0.85),
        (1000, "none", None): (0.95, 0.95),
        (1000, "dropout", 0.2): (0.96, 0.96),
        (1000, "dropout", 0.5): (0.97, 0.97),
    }
    for (size, reg, p), (test, val) in grid.items():
        for seed in range(3):
            jitter = 0.001 * seed if reg == "dropout" else 0.0  # the paired differences need a spread
            run = record(reg, p, {}, 0.0, seed, test + jitter, val + jitter)
            run["resolved_config"]["dataset"] = {"name": "mnist", "train_size": size}
            write_run(root / f"n{size}_{reg}_p{p}_seed{seed}", run)
    return root


def test_by_splits_each_group_into_one_per_value_each_with_its_own_best_p_and_comparison(sized, tmp_path):
    out = make_report([sized], tmp_path / "by", Options(by=("dataset.train_size",)))
    for size, p, verdict in ((100, 0.2, "worse"), (1000, 0.5, "better")):
        best = pd.read_csv(out.folder / f"mnist_mlp_train_size{size}_best_p.csv")
        assert list(best["label"]) == ["none", "dropout"]  # the size is the group's, not a label
        assert best["p"].iloc[1] == p
        paired = pd.read_csv(out.folder / f"mnist_mlp_train_size{size}_paired.csv")
        assert list(paired["comparison"]) == [f"dropout, p={p} vs none"]
        assert paired["verdict"].iloc[0] == verdict
    assert "## mnist / mlp / train_size=100 (9 finished runs)" in (out.folder / "report.md").read_text()
    assert len(pd.read_csv(out.folder / "runs.csv")) == 18
    side_by_side = pd.read_csv(out.folder / "mnist_mlp_by_train_size.csv")  # every size's comparison
    assert list(side_by_side["dataset.train_size"]) == [100, 1000]
    assert list(side_by_side["verdict"]) == ["worse", "better"]
    assert list(side_by_side["a_p"]) == [0.2, 0.5]
    assert (out.folder / "mnist_mlp_by_train_size.png").is_file()


def test_an_unknown_by_key_or_one_also_tuned_is_one_line(sized, tmp_path):
    with pytest.raises(DropbenchError, match=r"--by 'train_size' is not a setting of these runs"):
        make_report([sized], tmp_path / "bad", Options(by=("train_size",)))
    both = Options(tune=("dataset.train_size",), by=("dataset.train_size",))
    with pytest.raises(DropbenchError, match="given to both --tune and --by"):
        make_report([sized], tmp_path / "bad", both)
    assert not (tmp_path / "bad").exists()
