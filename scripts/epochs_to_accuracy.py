"""Finding 6 ("dropout slows training"): epochs to reach a validation accuracy, and the wall time
of an epoch, of one row against another in the same sweep, paired by seed.

For each threshold: the first epoch whose ``val/acc`` reaches it, per run (from the history in
each run's ``metrics.json``); the rows' means, the paired difference B - A with its 95% t
interval over the seeds where both reached it, and the ratio of the means. For the epoch's wall
time: the median ``epoch_time_s`` of each run, and the per-seed ratio B / A as a geometric mean
with a 95% interval (a t interval on the log ratios). Rows are the report's labels ("none",
"dropout", "none (wd=0.0005)"), each at one p.

    python scripts/epochs_to_accuracy.py results/sweeps/table9_penalties --threshold 0.95 0.96
"""

from __future__ import annotations

import argparse
import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dropbench.report.labels import add_labels
from dropbench.report.paired import Arm, compare
from dropbench.report.runs import runs_frame, scan

ALPHA = 0.05


def first_epoch_reaching(history: list[dict], threshold: float) -> float:
    """The first epoch (1-based) whose val/acc is at least ``threshold``; NaN if none is."""
    return next((row["epoch"] for row in history if row.get("val/acc", -1) >= threshold), math.nan)


def arm(frame: pd.DataFrame, runs: dict, label: str, p: float | None) -> pd.DataFrame:
    """One row's runs (its label, at ``p`` when it has one), indexed by seed, with their histories."""
    chosen = frame[frame["label"] == label]
    if p is not None:
        chosen = chosen[np.isclose(chosen["p"].astype(float), p)]
    if chosen.empty:
        raise SystemExit(f"no finished run labelled {label!r} (p={p}); labels: {sorted(set(frame['label']))}")
    histories = [runs[folder].record["history"] for folder in chosen["run"]]
    return pd.DataFrame({"history": histories}, index=chosen["seed"].to_numpy())


def table(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str], thresholds: list[float]) -> str:
    lines = [
        f"| val/acc reached | {names[0]}: epochs (n) | {names[1]}: epochs (n) | B - A, epochs [95% CI] (n) "
        "| ratio B / A |",
        "|---|---|---|---|---|",
    ]
    for threshold in thresholds:
        ea = a["history"].map(partial(first_epoch_reaching, threshold=threshold))
        eb = b["history"].map(partial(first_epoch_reaching, threshold=threshold))
        found = compare(Arm("B", math.nan, eb.dropna()), Arm("A", math.nan, ea.dropna()))  # B - A
        n, diff, low, high = (found[key] for key in ("n", "diff_mean", "ci_low", "ci_high"))
        ratio = eb.mean() / ea.mean() if ea.notna().any() and eb.notna().any() else math.nan
        lines.append(
            f"| {100 * threshold:.1f}% | {ea.mean():.1f} ({ea.notna().sum()}) | {eb.mean():.1f} "
            f"({eb.notna().sum()}) | {diff:+.1f} [{low:+.1f}, {high:+.1f}] ({n}) | {ratio:.2f} |"
        )
    return "\n".join(lines)


def epoch_time_ratio(a: pd.DataFrame, b: pd.DataFrame) -> str:
    def median_time(history: list[dict]) -> float:
        return float(np.median([row["epoch_time_s"] for row in history]))

    ta, tb = a["history"].map(median_time), b["history"].map(median_time)
    logs = np.log((tb / ta).dropna())
    low, high = stats.t.interval(1 - ALPHA, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    return (
        f"median epoch wall time: A {ta.mean():.2f} s, B {tb.mean():.2f} s; "
        f"B / A {math.exp(logs.mean()):.2f} [{math.exp(low):.2f}, {math.exp(high):.2f}] "
        f"(geometric mean of {len(logs)} per-seed ratios)"
    )


def plot(
    a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str], thresholds: list[float], path: Path
) -> None:
    """Validation accuracy against the epoch, mean and range over seeds, with the thresholds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for color, name, runs in (("C0", names[0], a), ("C1", names[1], b)):
        curves = np.array([[row["val/acc"] * 100 for row in history] for history in runs["history"]])
        epochs = np.arange(1, curves.shape[1] + 1)
        ax.plot(epochs, curves.mean(axis=0), color=color, label=f"{name} (mean of {len(curves)} seeds)")
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2)
    for threshold in thresholds:
        ax.axhline(100 * threshold, color="gray", linestyle=":", linewidth=1)
    low = 100 * min(thresholds) - 2
    ax.set(
        xlabel="epoch",
        ylabel="validation accuracy (%)",
        ylim=(low, None),
        title="epochs to a validation accuracy",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--a", default="none", help="row A's label (default none)")
    parser.add_argument("--b", default="dropout", help="row B's label (default dropout)")
    parser.add_argument("--b-p", type=float, default=0.5, help="row B's p (default 0.5)")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.90, 0.95])
    parser.add_argument("--plot", type=Path, help="also draw the validation curves into this PNG")
    args = parser.parse_args()
    finished, _ = scan([args.sweep])
    runs = {str(run.folder): run for run in finished}
    frame = pd.concat(add_labels(group) for _, group in runs_frame(finished).groupby(["dataset", "model"]))
    a, b = arm(frame, runs, args.a, None), arm(frame, runs, args.b, args.b_p)
    names = (args.a, f"{args.b}, p={args.b_p:g}")
    print(f"A = {names[0]}, B = {names[1]}; {args.sweep}\n")
    print(table(a, b, names, args.threshold))
    print("\n" + epoch_time_ratio(a, b))
    if args.plot:
        plot(a, b, names, args.threshold, args.plot)


if __name__ == "__main__":
    main()
