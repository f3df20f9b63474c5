"""Paired-by-seed comparisons at each regularizer's best p (issue 12, item 2).

The end-to-end checks recompute every number from the runs.csv the report writes, with numpy
and scipy directly, never through dropbench.report.paired."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import record, write_run

from dropbench.report.build import Options, make_report
from dropbench.report.paired import Arm, comparisons, holm, seeds_for_power
from dropbench.report.render import latex
from dropbench.report.tables import Table

SEEDS = range(5)
#: seed effects shared by every regularizer (same init and data order): large, so only pairing
#: resolves the differences between rows
SEED_SHIFT = (0.000, 0.012, -0.009, 0.020, -0.015)
#: (reg, p) -> (test acc, val acc); validation prefers dropout p=0.5 and dropconnect p=0.2,
#: test prefers the other p of each, so a best p chosen by test would differ
SWEEP = {
    ("none", None): (0.970, 0.970),
    ("dropout", 0.2): (0.982, 0.975),
    ("dropout", 0.5): (0.978, 0.985),
    ("dropconnect", 0.2): (0.966, 0.980),
    ("dropconnect", 0.5): (0.975, 0.972),
}
CHOSEN = {"none": None, "dropout": 0.5, "dropconnect": 0.2}
MISSING = ("dropconnect", 0.2, 4)  # one run that never finished: its pairs drop seed 4


def noise(reg: str, p: float | None, seed: int) -> float:
    """Small per-run scatter, fixed by the run's identity."""
    return np.random.default_rng([len(reg), int(100 * (p or 0)), seed]).normal(0, 0.0015)


def sweep_record(reg: str, p: float | None, seed: int) -> dict:
    test, val = SWEEP[(reg, p)]
    made = copy.deepcopy(record(reg, p, {}, 0.0, 0, test, val))
    made["config"]["seed"] = made["resolved_config"]["seed"] = seed
    made["final"]["test/acc"] = test + SEED_SHIFT[seed] + noise(reg, p, seed)
    made["best"]["val/acc"] = val + SEED_SHIFT[seed]
    return made


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for (reg, p), seed in ((key, seed) for key in SWEEP for seed in SEEDS):
        if (reg, p, seed) != MISSING:
            write_run(root / f"{reg}_p{p}_seed{seed}", sweep_record(reg, p, seed))
    return make_report([root], None, Options())


def recomputed_best_p(runs: pd.DataFrame) -> dict[str, float]:
    """Per label, the p with the highest mean validation accuracy."""
    means = runs.groupby(["label", "p"], dropna=False)["val/acc_best"].mean().reset_index()
    return {label: rows.loc[rows["val/acc_best"].idxmax(), "p"] for label, rows in means.groupby("label")}


def errors(runs: pd.DataFrame, label: str, p: float) -> pd.Series:
    rows = runs[(runs["label"] == label) & ((runs["p"] == p) | (pd.isna(p) & runs["p"].isna()))]
    return pd.Series(100 * (1 - rows["test/acc"].to_numpy()), index=rows["seed"].to_numpy())


def test_best_p_is_the_validation_choice(report):
    runs = pd.read_csv(report.folder / "runs.csv")
    chosen = recomputed_best_p(runs)
    assert {k: (None if pd.isna(v) else v) for k, v in chosen.items()} == CHOSEN
    by_test = runs.assign(error=100 * (1 - runs["test/acc"])).groupby(["label", "p"])["error"].mean()
    for label in ("dropout", "dropconnect"):  # test would choose the other p: the choice is validation's
        assert by_test[label].idxmin() != CHOSEN[label]
    compared = pd.read_csv(report.folder / "mnist_mlp_paired.csv")
    for side in ("a", "b"):
        for label, p in zip(compared[side], compared[f"{side}_p"], strict=True):
            assert (pd.isna(p) and CHOSEN[label] is None) or p == CHOSEN[label]


def test_differences_intervals_and_p_values_match_a_recomputation(report):
    runs = pd.read_csv(report.folder / "runs.csv")
    compared = pd.read_csv(report.folder / "mnist_mlp_paired.csv")
    assert len(compared) == 3  # 3 rows at best p: every pair once
    assert compared["a"].tolist()[:2] == ["dropconnect", "dropout"] and set(compared["b"][:2]) == {"none"}
    raw = []
    for _, row in compared.iterrows():
        a, b = errors(runs, row["a"], row["a_p"]), errors(runs, row["b"], row["b_p"])
        common = sorted(set(a.index) & set(b.index))
        d = (a[common] - b[common]).to_numpy()
        n = len(d)
        half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
        t = d.mean() / (d.std(ddof=1) / math.sqrt(n))
        raw.append(2 * stats.t.sf(abs(t), n - 1))
        assert row["n"] == n == (4 if "dropconnect" in (row["a"], row["b"]) else 5)
        assert row["dropped_seeds"] == 5 - n
        assert row["diff_mean"] == pytest.approx(d.mean())
        assert row["ci_low"] == pytest.approx(d.mean() - half)
        assert row["ci_high"] == pytest.approx(d.mean() + half)
        assert row["p"] == pytest.approx(raw[-1])
    order = np.argsort(raw)  # Holm by hand: k-th smallest of m times (m - k), running max, cap 1
    running, expected = 0.0, [0.0] * len(raw)
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(raw) - k) * raw[i]))
        expected[i] = running
    assert compared["p_holm"].tolist() == pytest.approx(expected)
    dropped = compared[compared["dropped_seeds"] > 0]["note"]
    assert (dropped == "seed 4 not in both: dropped").all()


def test_report_has_the_table_caption_and_forest_plot(report):
    text = (report.folder / "report.md").read_text()
    assert "### paired comparisons at best p (test error)" in text
    assert "paired by seed" in text and "Holm-corrected" in text and "80% power" in text
    for ext in ("md", "csv", "tex"):
        assert (report.folder / f"mnist_mlp_paired.{ext}").stat().st_size > 0
    assert (report.folder / "mnist_mlp_paired.png").read_bytes()[:4] == b"\x89PNG"
    tex = (report.folder / "mnist_mlp_paired.tex").read_text()
    assert r"$\Delta$" in tex and "Δ" not in tex


def arm(label: str, values) -> Arm:
    return Arm(label, math.nan, pd.Series(values, index=range(len(values)), dtype=float))


BASE = [10.0, 11.0, 9.5, 12.0, 10.5, 11.5]


def compared(values_a, values_b=BASE, metric_lower_is_better=True) -> pd.Series:
    return comparisons([arm("none", values_b), arm("reg", values_a)], metric_lower_is_better).iloc[0]


def test_a_clear_improvement_is_better_and_its_reverse_worse():
    shift = [-1.0, -1.1, -0.9, -1.05, -0.95, -1.0]
    lower = compared([b + s for b, s in zip(BASE, shift, strict=True)])
    assert lower["verdict"] == "better" and lower["ci_high"] < 0 and lower["seeds_80"] == ""
    higher = compared([b - s for b, s in zip(BASE, shift, strict=True)])
    assert higher["verdict"] == "worse"
    as_accuracy = compared([b - s for b, s in zip(BASE, shift, strict=True)], metric_lower_is_better=False)
    assert as_accuracy["verdict"] == "better"  # higher accuracy is the improvement


def test_noise_is_not_resolved_with_a_seeds_estimate():
    jitter = [0.6, -0.3, 0.9, 0.1, 0.7, -0.5]
    row = compared([b + j for b, j in zip(BASE, jitter, strict=True)])
    assert row["verdict"] == "not resolved" and row["ci_low"] < 0 < row["ci_high"]
    needed = int(row["seeds_80"])
    effect = row["diff_mean"] / row["diff_sd"]

    def power(n: int) -> float:  # a paired t-test's power, from the noncentral t, here
        crit = stats.t.ppf(0.975, n - 1)
        shift = abs(effect) * math.sqrt(n)
        return stats.nct.sf(crit, n - 1, shift) + stats.nct.cdf(-crit, n - 1, shift)

    assert needed > 6 and power(needed) >= 0.8 > power(needed - 1)


def test_seeds_estimate_caps_and_is_na_without_difference_or_spread():
    assert seeds_for_power(0.01) is None
    tiny = compared([b + j for b, j in zip(BASE, [0.01, -0.5, 0.5, -0.4, 0.41, -0.01], strict=True)])
    assert tiny["verdict"] == "not resolved" and tiny["seeds_80"] == ">100"
    zero = compared([b + j for b, j in zip(BASE, [0.5, -0.5, 0.25, -0.25, 0.1, -0.1], strict=True)])
    assert zero["diff_mean"] == pytest.approx(0, abs=1e-12) and zero["seeds_80"] == "n/a"
    constant = compared([b - 1 for b in BASE])
    assert constant["verdict"] == "not resolved" and constant["seeds_80"] == "n/a"
    assert "no spread" in constant["note"] and pd.isna(constant["p"])


def test_fewer_than_two_common_seeds_says_so():
    row = comparisons([arm("none", [10.0, 11.0]), Arm("reg", 0.5, pd.Series([9.0], index=[1]))], True).iloc[0]
    assert row["n"] == 1 and row["verdict"] == "not resolved" and row["seeds_80"] == "n/a"
    assert row["note"].startswith("n<2: 1 seed(s) in common") and row["note"].endswith(
        "seed 0 not in both: dropped"
    )


def test_holm_adjusts_the_existing_p_values_only():
    adjusted = holm(pd.Series([0.01, 0.04, 0.03, math.nan]))
    assert adjusted[:3].tolist() == pytest.approx([0.03, 0.06, 0.06]) and pd.isna(adjusted[3])


def test_latex_spells_out_comparison_signs():
    cells = pd.DataFrame({"note": ["n<2: 1 seed(s) in common"], "seeds for 80% power": [">100"]})
    tex = latex(Table("paired", "t", "n", cells, cells), "caption", "key")
    assert r"n\textless{}2" in tex and r"\textgreater{}100" in tex and "<" not in tex and ">" not in tex


def test_a_report_whose_rows_share_no_seed_says_n_below_2(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "r" / f"none{seed}", sweep_record("none", None, seed))
        write_run(tmp_path / "r" / f"dropout{seed}", sweep_record("dropout", 0.5, seed + 2))
    out = make_report([tmp_path / "r"], tmp_path / "out", Options())
    row = pd.read_csv(out.folder / "mnist_mlp_paired.csv").iloc[0]
    assert row["n"] == 0 and row["verdict"] == "not resolved" and row["note"].startswith("n<2: 0 seed(s)")
    assert "n<2" in (out.folder / "report.md").read_text()
    assert not (out.folder / "mnist_mlp_paired.png").exists()  # no interval to draw
    assert holm(pd.Series([math.nan])).isna().all()
