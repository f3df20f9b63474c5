"""The report's OOD detection tables: each score's AUROC per regularizer at its best p, and
each score against the deterministic max softmax probability, paired by seed (the same runs)."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats
from test_report import record, write_run

from dropbench.report.build import Options, make_report

SEEDS = range(4)
SHIFT = (0.00, 0.03, -0.02, 0.01)  # per-seed AUROC shifts shared by every score of a run
#: score -> AUROC before the seed's shift: MI clearly above msp, entropy a hair above (noise decides)
AUROC = {"msp": 0.80, "entropy": 0.801, "entropy_mc": 0.83, "mi_mc": 0.90}
WOBBLE = (0.004, -0.003, 0.002, -0.004)


def ood_record(seed: int) -> dict:
    made = record("dropout", 0.5, {}, 0.0, seed % 3, 0.97, 0.97)
    made["config"]["seed"] = made["resolved_config"]["seed"] = seed
    for i, (score, value) in enumerate(AUROC.items()):
        made["final"][f"ood/auroc_{score}"] = value + SHIFT[seed] + (WOBBLE[(seed + i) % 4] if i else 0)
        made["final"][f"ood/fpr95_{score}"] = 1 - value
    return made


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    for seed in SEEDS:
        write_run(root / f"seed{seed}", ood_record(seed))
    return make_report([root], None, Options()).folder


def test_every_score_has_its_auroc_and_fpr_at_the_best_p(out):
    table = pd.read_csv(out / "mnist_mlp_ood.csv")
    assert list(table["score"]) == ["msp", "entropy", "entropy_mc", "mi_mc"]  # the baseline first
    mi = table[table["score"] == "mi_mc"].iloc[0]
    assert mi["n"] == 4 and mi["auroc_mean"] == pytest.approx(100 * (0.90 + sum(SHIFT) / 4 + sum(WOBBLE) / 4))
    assert "mutual information (MC)" in (out / "mnist_mlp_ood.md").read_text()


def test_each_score_is_compared_with_msp_in_the_same_runs_as_scipy_does(out):
    rows = pd.read_csv(out / "mnist_mlp_ood_paired.csv").set_index("comparison")
    runs = pd.read_csv(out / "runs.csv").sort_values("seed")
    for score in ("entropy", "entropy_mc", "mi_mc"):
        row = rows.loc[f"dropout, p=0.5: {score} − msp"]
        test = stats.ttest_rel(100 * runs[f"ood/auroc_{score}"], 100 * runs["ood/auroc_msp"])
        assert row["p"] == pytest.approx(test.pvalue, rel=1e-8)
        interval = test.confidence_interval(0.95)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high), rel=1e-8)
    assert rows["verdict"].tolist() == ["not resolved", "better", "better"]


def test_runs_without_ood_metrics_get_no_ood_tables(tmp_path):
    write_run(tmp_path / "r" / "seed0", record("dropout", 0.5, {}, 0.0, 0, 0.97, 0.97))
    folder = make_report([tmp_path / "r"], tmp_path / "out", Options()).folder
    assert not list(folder.glob("*_ood*"))
