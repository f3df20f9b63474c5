"""An interaction between a condition and a regularizer, paired by seed: does dropout's effect
(dropout - none, in test error) change with the condition (BatchNorm on or off)?

Reads a report's ``runs.csv`` (``dropbench report SWEEP --by KEY``), takes each condition's two
rows at the p the report chose (``*_best_p.csv`` of that condition's group), forms per seed
d = error(A) - error(B) in each condition, and tests d(second) - d(first) with a paired t
interval over the seeds both conditions ran (scipy.stats.ttest_rel).

    python scripts/interaction_check.py results/findings/bn_dropout --by model.norm --base none
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def chosen_p(report: Path, prefix: str, label: str) -> float | None:
    best = pd.read_csv(report / f"{prefix}_best_p.csv")
    p = best.loc[best["label"] == label, "p"].iloc[0]
    return None if pd.isna(p) else float(p)


def errors(runs: pd.DataFrame, label: str, p: float | None) -> pd.Series:
    chosen = runs[runs["label"] == label]
    if p is not None:
        chosen = chosen[np.isclose(chosen["p"].astype(float), p)]
    return pd.Series(100 * (1 - chosen["test/acc"].to_numpy()), index=chosen["seed"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report folder made with --by KEY")
    parser.add_argument("--by", required=True)
    parser.add_argument("--a", default="dropout")
    parser.add_argument("--b", default="none")
    parser.add_argument("--base", help="the reference condition (default: the first found)")
    args = parser.parse_args()
    runs = pd.read_csv(args.report / "runs.csv")
    effects = {}
    for value, group in runs.groupby(args.by, sort=False):
        dataset, model = group["dataset"].iloc[0], group["model"].iloc[0]
        prefix = f"{dataset}_{model}_{args.by.split('.')[-1]}{value}"
        pa = chosen_p(args.report, prefix, args.a)
        d = errors(group, args.a, pa) - errors(group, args.b, chosen_p(args.report, prefix, args.b))
        effects[value] = d
        per_seed = d.round(2).to_dict()
        print(f"{args.by}={value}: {args.a} (p={pa}) - {args.b}: {d.mean():+.2f} pp; per seed {per_seed}")
    base = next((v for v in effects if str(v) == args.base), next(iter(effects)))
    (first, d1), (second, d2) = (base, effects[base]), next((v, d) for v, d in effects.items() if v != base)
    both = pd.concat([d1, d2], axis=1, keys=["first", "second"]).dropna()
    test = stats.ttest_rel(both["second"], both["first"])
    interval = test.confidence_interval(0.95)
    print(
        f"interaction: the effect at {args.by}={second} minus at {args.by}={first}: "
        f"{(both['second'] - both['first']).mean():+.2f} [{interval.low:+.2f}, {interval.high:+.2f}] pp, "
        f"n = {len(both)}, p = {test.pvalue:.3f}"
    )


if __name__ == "__main__":
    main()
