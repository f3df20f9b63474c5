"""Issue 12's acceptance check of the paired table: run a real 3-regularizer x 2-p x 5-seed
MNIST MLP sweep, report it, then recompute every comparison from ``runs.csv`` alone (best p by
mean validation accuracy, per-seed differences, ``scipy.stats.t`` by hand rather than
``ttest_rel``, Holm written out afresh) and compare with the report's ``*_paired.csv``.

    export DROPBENCH_DATA=../shared/data
    python scripts/paired_acceptance.py [--results-dir /tmp/paired_acceptance]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SWEEP = [
    "reg=none,dropout,dropconnect",
    "p=0.2,0.5",
    "seed=0,1,2,3,4",
    "dataset.train_size=2000",
    "model.hidden=[128]",
    "epochs=3",
    "name=paired_acceptance",
]
TOLERANCE = 1e-9  # the CSVs hold 10 significant digits


def dropbench(*args: str) -> None:
    print("+ dropbench", " ".join(args), flush=True)
    if subprocess.run([sys.executable, "-m", "dropbench", *args]).returncode != 0:
        sys.exit(f"dropbench {' '.join(args)} failed")


def best_rows(runs: pd.DataFrame) -> list[tuple[str, float]]:
    """(label, p) per label at its best mean validation accuracy, ties to the smaller p; none first."""
    means = runs.groupby(["label", "p"], dropna=False)["val/acc_best"].mean().reset_index()
    chosen = []
    for label, rows in means.groupby("label", sort=False):
        rows = rows.sort_values("p")
        chosen.append((label, rows.loc[rows["val/acc_best"].idxmax(), "p"]))
    return sorted(chosen, key=lambda row: row[0] != "none")


def errors(runs: pd.DataFrame, label: str, p: float) -> pd.Series:
    rows = runs[(runs["label"] == label) & ((runs["p"] == p) | (pd.isna(p) & runs["p"].isna()))]
    return pd.Series(100 * (1 - rows["test/acc"].to_numpy()), index=rows["seed"].to_numpy()).sort_index()


def recompute(runs: pd.DataFrame) -> pd.DataFrame:
    """Every pair, later minus earlier: mean, 95% t interval and two-sided p, then Holm."""
    chosen = best_rows(runs)
    rows = []
    for (b, b_p), (a, a_p) in itertools.combinations(chosen, 2):
        diff = errors(runs, a, a_p) - errors(runs, b, b_p)
        n, mean, sd = len(diff), diff.mean(), diff.std(ddof=1)
        se = sd / np.sqrt(n)
        half = stats.t.ppf(0.975, n - 1) * se
        pvalue = 2 * stats.t.sf(abs(mean / se), n - 1)
        rows.append(
            {
                "a": a,
                "a_p": a_p,
                "b": b,
                "b_p": b_p,
                "n": n,
                "diff_mean": mean,
                "ci_low": mean - half,
                "ci_high": mean + half,
                "p": pvalue,
            }
        )
    made = pd.DataFrame(rows)
    order = made["p"].sort_values().index
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):  # Holm: (m - rank) p, non-decreasing, at most 1
        running = max(running, min(1.0, (m - rank) * made.loc[index, "p"]))
        made.loc[index, "p_holm"] = running
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default="/tmp/paired_acceptance")  # runs, not results
    args = parser.parse_args()
    sweep = Path(args.results_dir) / "sweeps" / "paired_acceptance"
    dropbench("run", "-m", *SWEEP, f"results_dir={args.results_dir}")
    dropbench("report", str(sweep), "--out", str(sweep / "report"))
    runs = pd.read_csv(sweep / "report" / "runs.csv")
    reported = pd.read_csv(sweep / "report" / "mnist_mlp_paired.csv")
    mine = recompute(runs)
    columns = ["n", "diff_mean", "ci_low", "ci_high", "p", "p_holm"]
    chosen = ", ".join(f"{label} p={p:g}" for label, p in best_rows(runs) if not pd.isna(p))
    print(f"{len(mine)} comparisons over {runs['seed'].nunique()} seeds; best p on validation: {chosen}")
    worst = 0.0
    for (_, ours), (_, theirs) in zip(mine.iterrows(), reported.iterrows(), strict=True):
        assert (ours["a"], ours["b"]) == (theirs["a"], theirs["b"]), (ours["a"], theirs["a"])
        for column in columns:
            gap = abs(ours[column] - theirs[column]) / max(1.0, abs(ours[column]))
            worst = max(worst, gap)
        print(
            f"{ours['a']} vs {ours['b']}: {ours['diff_mean']:+.3f} [{ours['ci_low']:+.3f}, "
            f"{ours['ci_high']:+.3f}] pp, p {ours['p']:.4f}, Holm {ours['p_holm']:.4f}; "
            f"report: {theirs['diff_mean']:+.3f} [{theirs['ci_low']:+.3f}, {theirs['ci_high']:+.3f}], "
            f"p {theirs['p']:.4f}, Holm {theirs['p_holm']:.4f}"
        )
    verdict = "equal" if worst < TOLERANCE else "DIFFERENT"
    print(f"largest relative difference {worst:.1e}: {verdict}")
    sys.exit(0 if worst < TOLERANCE else 1)


if __name__ == "__main__":
    main()
