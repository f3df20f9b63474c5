"""Paired comparisons of one (dataset, model) group's regularizers at their best p.

Runs with the same seed share their initial weights and data order whatever the regularizer,
so two regularizers are compared on the per-seed differences of their test numbers: a paired
t-test, whose interval is much narrower than one from two independent means when seeds vary a
lot. Each regularizer row sits at the p the best-p table chose on validation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dropbench.report.plots import same_p, with_p
from dropbench.report.tables import UNITS, Table, metric_values

ALPHA = 0.05  # two-sided level of the intervals, the corrected p-values and the power estimate
POWER = 0.8
MAX_SEEDS = 100  # seeds-needed estimates above this are shown as ">100"
#: sd of the differences (pp) below which they count as constant: float rounding, not spread
#: (one test example of 10,000 is 0.01 pp)
NO_SPREAD = 1e-9


@dataclass(frozen=True)
class Arm:
    """One regularizer row at its chosen p: its headline number per seed."""

    label: str
    p: float
    values: pd.Series  # indexed by seed

    @property
    def name(self) -> str:
        return with_p(self.label, self.p)


def arms(frame: pd.DataFrame, best: pd.DataFrame, metric: str, split: str) -> list[Arm]:
    """Each row of the best-p table (its choice of p, not a second one) with its runs' numbers;
    reg=none first, so every other row is compared against it first."""
    values = metric_values(frame, metric, split)
    found = []
    baselines_first = best.sort_values("reg", key=lambda regs: regs != "none", kind="stable")
    for label, p in zip(baselines_first["label"], baselines_first["p"], strict=True):
        runs = frame[(frame["label"] == label) & same_p(frame["p"], p)]
        by_seed = pd.Series(values[runs.index].to_numpy(), index=runs["seed"].to_numpy()).dropna()
        found.append(Arm(label, p, by_seed.sort_index()))
    return found


def seeds_for_power(effect: float) -> int | None:
    """Fewest seeds at which a two-sided paired t-test at ALPHA detects a standardized mean
    difference ``effect`` (mean / sd of the differences) with probability POWER; None above
    MAX_SEEDS. Power from the noncentral t distribution of the t statistic."""
    n = np.arange(2, MAX_SEEDS + 1)
    df = n - 1
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    shift = abs(effect) * np.sqrt(n)
    power = stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift)
    reached = np.flatnonzero(power >= POWER)
    return int(n[reached[0]]) if reached.size else None


def holm(pvalues: pd.Series) -> pd.Series:
    """Holm's step-down adjustment of the p-values that exist (NaN stays NaN and does not count):
    the i-th smallest of m is multiplied by m - i + 1, then made non-decreasing, capped at 1."""
    tested = pvalues.dropna().sort_values()
    scaled = tested.to_numpy() * (len(tested) - np.arange(len(tested)))
    adjusted = pd.Series(np.minimum(1.0, np.maximum.accumulate(scaled)), index=tested.index)
    return adjusted.reindex(pvalues.index)


def verdict(low: float, high: float, p_holm: float, mean: float, lower_is_better: bool) -> str:
    """better / worse when the 95% interval excludes 0 and the Holm-corrected p < ALPHA, else
    not resolved. The one place the rule is written."""
    resolved = p_holm < ALPHA and (low > 0 or high < 0)  # NaN (no test) compares False
    if not resolved:
        return "not resolved"
    return "better" if (mean < 0) == lower_is_better else "worse"


def dropped_note(seeds: list) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} not in both: dropped"


def compare(a: Arm, b: Arm) -> dict:
    """A minus B over the seeds both ran; the test's numbers, or NaN and the reason there is none."""
    common = a.values.index.intersection(b.values.index)
    dropped = sorted(a.values.index.symmetric_difference(b.values.index))
    row = {
        "comparison": f"{a.name} vs {b.name}",
        "a": a.label,
        "a_p": a.p,
        "b": b.label,
        "b_p": b.p,
        "n": len(common),
        "dropped_seeds": len(dropped),
    }
    row |= dict.fromkeys(("diff_mean", "diff_sd", "ci_low", "ci_high", "p"), math.nan)
    notes = [dropped_note(dropped)] if dropped else []
    if len(common) < 2:
        return row | {"note": "; ".join([f"n<2: {len(common)} seed(s) in common", *notes])}
    differences = a.values[common] - b.values[common]
    row |= {"diff_mean": differences.mean(), "diff_sd": differences.std(ddof=1)}
    if row["diff_sd"] < NO_SPREAD:  # t is undefined; scipy would call any non-zero mean certain
        notes.append("the differences have no spread: no test")
        return row | {"ci_low": row["diff_mean"], "ci_high": row["diff_mean"], "note": "; ".join(notes)}
    test = stats.ttest_rel(a.values[common], b.values[common])
    interval = test.confidence_interval(1 - ALPHA)
    row |= {"ci_low": interval.low, "ci_high": interval.high, "p": test.pvalue}
    return row | {"note": "; ".join(notes)}


def seeds_text(row: pd.Series) -> str:
    """The seeds estimate of a not-resolved row: a count, '>100', or 'n/a' (no difference, no spread)."""
    if row["verdict"] != "not resolved":
        return ""
    if row["n"] < 2 or not abs(row["diff_mean"]) >= NO_SPREAD or not row["diff_sd"] >= NO_SPREAD:
        return "n/a"
    needed = seeds_for_power(row["diff_mean"] / row["diff_sd"])
    return f">{MAX_SEEDS}" if needed is None else str(needed)


def comparisons(arms_: list[Arm], lower_is_better: bool) -> pd.DataFrame:
    """Every pair of rows, later minus earlier in table order, so each reg is measured against the
    baselines (none, then l2) first; Holm across all of them; a verdict for each."""
    rows = pd.DataFrame([compare(later, earlier) for earlier, later in itertools.combinations(arms_, 2)])
    rows["p_holm"] = holm(rows["p"])
    rows["verdict"] = [
        verdict(lo, hi, ph, m, lower_is_better)
        for lo, hi, ph, m in zip(
            rows["ci_low"], rows["ci_high"], rows["p_holm"], rows["diff_mean"], strict=True
        )
    ]
    rows["seeds_80"] = [seeds_text(row) for _, row in rows.iterrows()]
    return rows


def number_text(value: float, digits: int = 2) -> str:
    return "" if pd.isna(value) else f"{value:+.{digits}f}"


def p_text(value: float) -> str:
    return "" if pd.isna(value) else (f"{value:.1e}" if value < 0.001 else f"{value:.3f}")


def shown(rows: pd.DataFrame, heading: str) -> pd.DataFrame:
    interval = [
        "" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
        for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
    ]
    return pd.DataFrame(
        {
            "comparison": rows["comparison"],
            "verdict": rows["verdict"],
            "n": rows["n"],
            f"Δ {heading} ({DIFF_UNITS[heading.split()[-1]][0]})": rows["diff_mean"].map(number_text),
            "95% CI": interval,
            "p": rows["p"].map(p_text),
            "p (Holm)": rows["p_holm"].map(p_text),
            f"seeds for {POWER:.0%} power": rows["seeds_80"],
            "note": rows["note"],
        }
    )


#: The unit of a difference of each headline metric, (short, long): points for a percentage
DIFF_UNITS = {
    metric: ("pp", "percentage points") if unit == "%" else (unit, unit) for metric, unit in UNITS.items()
}


def paired_table(frame: pd.DataFrame, best: pd.DataFrame, metric: str, split: str) -> Table | None:
    """The paired comparisons of one group's rows at their best p; None with fewer than two rows."""
    found = arms(frame, best, metric, split)
    if len(found) < 2:
        return None
    lower_is_better = metric in ("error", "mse")
    rows = comparisons(found, lower_is_better)
    heading = f"{split} {metric}"
    note = (
        f"paired by seed: each row is A - B in {heading} ({DIFF_UNITS[metric][1]}) over the n seeds both "
        "rows "
        f"ran at their validation-chosen best p (a seed fixes the initial weights and data order), "
        f"mean with a 95% paired-t confidence interval; p is the two-sided paired t-test, "
        f"Holm-corrected across the {rows['p'].notna().sum()} tests of this table. "
        f"Verdict: better or worse ({'lower' if lower_is_better else 'higher'} {metric} is better) when the "
        f"interval excludes 0 and the Holm p is below {ALPHA:g}, else not resolved, with the seeds a "
        f"paired t-test at {ALPHA:g} (uncorrected) would need to detect the observed difference "
        f"with {POWER:.0%} power"
    )
    return Table("paired", f"paired comparisons at best p ({heading})", note, shown(rows, heading), rows, 2)
