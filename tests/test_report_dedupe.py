"""A run found in several folders under one PATH is counted once (issue 12, item 1)."""

from __future__ import annotations

import copy
import statistics

import pandas as pd
import pytest
from test_report import record, write_run

from dropbench.cli import main
from dropbench.errors import DropbenchError
from dropbench.report.build import Options, make_report
from dropbench.report.dedupe import run_identity
from dropbench.report.runs import Run

#: where a run may be stored twice: its own folder and two sweeps that repeated it
COPIES = ("runs/mnist_mlp_dropout_p0.5_seed{seed}", "sweeps/a/{seed}", "sweeps/b/{seed}")


def dropout_run(seed: int, test: float = 0.975) -> dict:
    return record("dropout", 0.5, {}, 0.0, seed, test, 0.98)


@pytest.fixture
def tripled(tmp_path):
    """Seeds 0 and 1 of one dropout run, each stored in the three folders of COPIES."""
    for seed in (0, 1):
        for where in COPIES:
            write_run(tmp_path / "results" / where.format(seed=seed), dropout_run(seed))
    return tmp_path / "results"


def test_copies_of_a_run_count_once_and_the_merge_is_reported(tripled, tmp_path):
    out = make_report([tripled], tmp_path / "out", Options())
    main_table = pd.read_csv(out.folder / "mnist_mlp_main.csv")
    assert main_table["n"].tolist() == [2]  # 2 seeds, not 6 folders
    errors = [100 * (1 - dropout_run(seed)["final"]["test/acc"]) for seed in (0, 1)]
    assert main_table["test/error_std"].iloc[0] == pytest.approx(statistics.stdev(errors))
    runs = pd.read_csv(out.folder / "runs.csv")
    assert sorted(runs["seed"]) == [0, 1]
    merged = pd.read_csv(out.folder / "merged.csv")
    assert merged["copies"].tolist() == [3, 3]
    also = " ".join(merged["also_in"])
    assert "sweeps/a/0" in also and "sweeps/b/1" in also
    report = (out.folder / "report.md").read_text()
    assert "2 finished runs under" in report and "4 more copies of them merged" in report
    assert "## runs found more than once" in report


def test_the_same_folder_named_twice_is_not_a_merge(tripled, tmp_path):
    out = make_report([tripled, tripled / "sweeps"], tmp_path / "out", Options())
    assert pd.read_csv(out.folder / "mnist_mlp_main.csv")["n"].tolist() == [2]


def test_copies_with_different_metrics_are_a_one_line_error(tripled, tmp_path, capsys):
    write_run(tripled / "sweeps" / "c" / "0", dropout_run(0, test=0.960))
    with pytest.raises(DropbenchError, match="with different metrics") as raised:
        make_report([tripled], tmp_path / "out", Options())
    message = str(raised.value)
    assert str(tripled / "runs" / "mnist_mlp_dropout_p0.5_seed0") in message
    assert str(tripled / "sweeps" / "c" / "0") in message and "final/test/acc" in message
    assert main(["report", str(tripled), "--out", str(tmp_path / "cli")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("dropbench: error: ")


def test_identity_ignores_p_for_regs_without_it_and_where_a_run_was_stored(tmp_path):
    none = record("none", None, {}, 0.0, 0, 0.97, 0.97)
    at_p = copy.deepcopy(none)
    at_p["resolved_config"] |= {"p": 0.5, "results_dir": "/elsewhere", "name": "rerun"}
    assert run_identity(Run(tmp_path / "a", none)) == run_identity(Run(tmp_path / "b", at_p))
    other_seed = record("none", None, {}, 0.0, 1, 0.97, 0.97)
    assert run_identity(Run(tmp_path / "a", none)) != run_identity(Run(tmp_path / "a", other_seed))
    dropout = dropout_run(0)
    higher = copy.deepcopy(dropout)
    higher["resolved_config"]["p"] = 0.6  # dropout uses p: another run
    assert run_identity(Run(tmp_path / "a", dropout)) != run_identity(Run(tmp_path / "b", higher))
    old = {k: v for k, v in none.items() if k != "resolved_config"}
    assert run_identity(Run(tmp_path / "a", old)) != run_identity(Run(tmp_path / "b", old))


def test_distinct_runs_sharing_a_row_and_seed_are_refused(tmp_path):
    """Runs that differ in a setting the label does not name would count one seed twice."""
    first = dropout_run(0)
    second = dropout_run(0, test=0.96)
    second["resolved_config"]["mc_samples"] = 50  # not a labelled setting
    write_run(tmp_path / "r" / "a", first)
    write_run(tmp_path / "r" / "b", second)
    with pytest.raises(DropbenchError, match=r"both dropout, p=0.5 seed 0 .*mc_samples"):
        make_report([tmp_path / "r"], tmp_path / "out", Options())


def test_two_regularizers_with_the_same_settings_are_two_runs(tmp_path):
    """Spatial and element-wise dropout in the same places resolve to the same settings (they
    differ only in their layers, which are wiring): their group choice tells them apart."""
    spatial = dropout_run(0)
    elementwise = copy.deepcopy(spatial)
    elementwise["config"]["reg"] = "conv_dropout"
    assert run_identity(Run(tmp_path / "a", spatial)) != run_identity(Run(tmp_path / "b", elementwise))
