"""``dropbench report --by KEY``: every condition's paired comparisons side by side.

With ``--by dataset.train_size`` each training-set size is its own group, with its own best p
and paired table (:mod:`dropbench.report.paired`); this module gathers those tables of one
(dataset, model) into ``D_M_by_KEY``: one row per condition and comparison, and a figure of
each comparison's difference and 95% interval against the condition. The verdicts are the
groups' own: Holm's correction runs within each condition's table, not across conditions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dropbench.report.labels import format_value
from dropbench.report.paired import number_text, p_text
from dropbench.report.plots import interval_point
from dropbench.report.tables import Table

#: the paired table's columns this one keeps, after the condition's
KEPT = ["a", "a_p", "b", "b_p", "n", "diff_mean", "ci_low", "ci_high", "p_holm", "verdict"]


def short_key(key: str) -> str:
    return key.split(".")[-1]


def gather(paired: list[tuple[object, Table]], key: str) -> pd.DataFrame:
    """The rows of each condition's paired table (condition value, table), one frame."""
    frames = [table.numbers[KEPT].assign(**{key: value}) for value, table in paired]
    return pd.concat(frames, ignore_index=True)[[key, *KEPT]]


def arm_names(labels: pd.Series, ps: pd.Series) -> list[str]:
    """'dropout, p=0.5', or the bare label of a row without p."""
    return [
        label if pd.isna(p) else f"{label}, p={format_value(p)}" for label, p in zip(labels, ps, strict=True)
    ]


def conditions_table(rows: pd.DataFrame, key: str, heading: str, unit: str) -> Table:
    """One row per condition and comparison: A and B at their chosen p, n, the difference, its
    interval, the condition's Holm p and the verdict."""
    shown = pd.DataFrame(
        {
            short_key(key): rows[key].map(format_value),
            "A": arm_names(rows["a"], rows["a_p"]),
            "B": arm_names(rows["b"], rows["b_p"]),
            "verdict": rows["verdict"],
            "n": rows["n"],
            f"Δ {heading} ({unit})": rows["diff_mean"].map(number_text),
            "95% CI": [
                "" if pd.isna(lo) else f"[{number_text(lo)}, {number_text(hi)}]"
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "p (Holm)": rows["p_holm"].map(p_text),
        }
    )
    note = (
        f"each condition's paired comparisons (A - B in {heading}, {unit}, at each row's best p chosen on "
        f"validation within the condition), side by side; Holm's correction is within each condition"
    )
    return Table(f"by_{short_key(key)}", f"comparisons by {short_key(key)}", note, shown, rows, 4)


def numeric(values: pd.Series) -> bool:
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def conditions_figure(rows: pd.DataFrame, key: str, heading: str, unit: str, title: str) -> Figure | None:
    """Each comparison's difference and 95% interval against the condition (a log axis for sizes
    spanning a factor of 10 or more); filled points are resolved verdicts."""
    rows = rows[rows["ci_low"].notna()]
    if rows.empty:
        return None
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    is_number = numeric(rows[key])
    places = sorted(rows[key].unique(), key=float if is_number else format_value)
    for index, ((a, b), pair) in enumerate(rows.groupby(["a", "b"], sort=False)):
        x = pair[key].astype(float) if is_number else pair[key].map(places.index)
        color = f"C{index}"
        for xi, (_, row) in zip(x, pair.iterrows(), strict=True):
            interval_point(ax, row, xi, color, vertical=True)
        ax.plot(x, pair["diff_mean"], color=color, alpha=0.6, label=f"{a} - {b}")
    if is_number and min(map(float, places)) > 0 and max(map(float, places)) / min(map(float, places)) >= 10:
        ax.set_xscale("log")
    if not is_number:
        ax.set_xticks(range(len(places)), labels=[format_value(v) for v in places])
    ax.axhline(0, color="gray", linestyle="--", linewidth=1)
    ax.set(title=title, xlabel=short_key(key), ylabel=f"Δ {heading} ({unit}), 95% paired-t interval")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def by_outputs(
    paired: list[tuple[object, Table]], key: str, heading: str, unit: str, title: str
) -> tuple[Table, Figure | None] | None:
    """The table and figure of one (dataset, model)'s conditions; None with fewer than two."""
    if len(paired) < 2:
        return None
    rows = gather(paired, key)
    rows = rows.iloc[np.argsort(pd.to_numeric(rows[key], errors="coerce").fillna(0), kind="stable")]
    return conditions_table(rows, key, heading, unit), conditions_figure(rows, key, heading, unit, title)
