"""An interaction between a condition and a regularizer, paired by seed: does dropout's effect
(dropout - none, in test error) change with the condition (BatchNorm on or off)?

Reads a report made with ``dropbench report SWEEP --by KEY``: its ``*_by_KEY.csv`` says, per
condition, the p each of the two rows was compared at (the report's validation choice), and
``runs.csv`` gives each run's test error. Per seed d = error(A) - error(B) in each condition;
the interaction is d(other) - d(base), a paired t interval over the seeds both conditions ran
(the report's own :func:`dropbench.report.paired.compare`).

    python scripts/interaction_check.py results/findings/bn_dropout --by model.norm --base none
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dropbench.report.paired import Arm, compare


def errors(runs: pd.DataFrame, label: str, p: float) -> pd.Series:
    """Test error (%) per seed of one row at ``p`` (NaN: a row without p)."""
    chosen = runs[runs["label"] == label]
    if not math.isnan(p):
        chosen = chosen[np.isclose(chosen["p"].astype(float), p)]
    return pd.Series(100 * (1 - chosen["test/acc"].to_numpy()), index=chosen["seed"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report folder made with --by KEY")
    parser.add_argument("--by", required=True)
    parser.add_argument("--a", default="dropout")
    parser.add_argument("--b", default="none")
    parser.add_argument("--base", help="the reference condition (default: the first listed)")
    args = parser.parse_args()
    runs = pd.read_csv(args.report / "runs.csv")
    [table] = args.report.glob(f"*_by_{args.by.split('.')[-1]}.csv")
    compared = pd.read_csv(table)
    compared = compared[(compared["a"] == args.a) & (compared["b"] == args.b)]
    effects = {}
    for _, row in compared.iterrows():
        in_condition = runs[runs[args.by].astype(str) == str(row[args.by])]
        d = errors(in_condition, args.a, row["a_p"]) - errors(in_condition, args.b, row["b_p"])
        effects[str(row[args.by])] = d.dropna()
        chosen = f"{args.a} (p={row['a_p']}) - {args.b}"
        print(f"{args.by}={row[args.by]}: {chosen}: {d.mean():+.2f} pp; per seed {d.round(2).to_dict()}")
    base = args.base if args.base in effects else next(iter(effects))
    other = next(value for value in effects if value != base)
    found = compare(Arm(other, math.nan, effects[other]), Arm(base, math.nan, effects[base]))
    print(
        f"interaction: the effect at {args.by}={other} minus at {args.by}={base}: "
        f"{found['diff_mean']:+.2f} [{found['ci_low']:+.2f}, {found['ci_high']:+.2f}] pp, "
        f"n = {found['n']}, p = {found['p']:.3f}"
    )


if __name__ == "__main__":
    main()
