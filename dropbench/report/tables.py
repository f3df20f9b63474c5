"""Summary tables of one (dataset, model) group: mean ± sample std over seeds, with n.

Each table comes twice: ``shown`` (formatted cells, for Markdown and LaTeX) and ``numbers``
(one row per regularizer and p with mean, std and n as numbers, for CSV and for plots).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dropbench.report.runs import Problem, gap_points

NO_P = "—"  # the column of regularizers that ignore p
SPLIT_NOTES = {
    "test": "test metrics of the best-validation weights",
    "test_last": "test metrics of the last epoch's weights",
    "test_mc": "MC dropout test metrics of the best-validation weights",
}
KEYS = ["label", "reg", "p"]


@dataclass(frozen=True)
class Table:
    """One table: ``name`` is its file stem, ``note`` says what the numbers are."""

    name: str
    title: str
    note: str
    shown: pd.DataFrame
    numbers: pd.DataFrame
    text_columns: int = 1  # leading columns of text (left-aligned); the rest are numbers


def metric_name(metric: str, split: str) -> str:
    """``test/error`` or ``test/acc``: the column name of the headline number."""
    return f"{split}/{metric}"


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, or NaN for every run when no run recorded that metric."""
    return frame[name] if name in frame else pd.Series(float("nan"), index=frame.index)


#: The unit each headline metric is shown in: classification error and accuracy in %, a
#: reconstruction's per-pixel MSE (pixels in [0, 1]) in thousandths.
UNITS = {"error": "%", "acc": "%", "mse": "×10⁻³"}


def recorded_metric(metric: str) -> str:
    """The recorded metric a headline number is made from: ``acc`` for error and acc."""
    return "mse" if metric == "mse" else "acc"


def metric_values(frame: pd.DataFrame, metric: str, split: str) -> pd.Series:
    """The headline number per run in its unit: error = 100 (1 - acc), acc = 100 acc, or
    mse = 1000 mse (a reconstruction's)."""
    values = column(frame, f"{split}/{recorded_metric(metric)}")
    if metric == "mse":
        return 1000 * values
    return 100 * (1 - values) if metric == "error" else 100 * values


def validation_choice(metric: str) -> tuple[str, float, bool, str]:
    """How the best p is chosen for a headline metric: (runs.csv column, scale, larger is
    better, what it is). A classifier's by validation accuracy, a reconstruction's by validation loss."""
    if metric == "mse":
        return "val/loss_best", 1.0, False, "loss"
    return "val/acc_best", 100.0, True, "accuracy"


def summarize(frame: pd.DataFrame, values: pd.Series, name: str) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed) and n of ``values`` per label and p.

    Runs where the value is missing (an older record without the metric) do not count in n.
    """
    grouped = frame.assign(_value=values).dropna(subset="_value").groupby(KEYS, dropna=False, sort=False)
    stats = grouped["_value"].agg(["mean", "std", "count"]).reset_index()
    return stats.rename(columns={"mean": f"{name}_mean", "std": f"{name}_std", "count": "n"})


def cell(mean: float, std: float, n: int, digits: int = 2, with_n: bool = True) -> str:
    """'1.23 ± 0.05 (n=3)'; one seed has no spread, so '1.23 (n=1)'."""
    spread = n >= 2 and not pd.isna(std)
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if spread else f"{mean:.{digits}f}"
    return f"{text} (n={n})" if with_n else text


def cells(numbers: pd.DataFrame, name: str, digits: int = 2, with_n: bool = True) -> list[str]:
    """The ``cell`` text of every row of ``numbers`` for the value ``name``; empty where it is missing."""
    stats = zip(numbers[f"{name}_mean"], numbers[f"{name}_std"], numbers["n"], strict=True)
    return ["" if pd.isna(m) else cell(m, s, n, digits, with_n) for m, s, n in stats]


def p_column(p: float) -> str:
    return NO_P if pd.isna(p) else f"p={p:g}"


def grid(numbers: pd.DataFrame, name: str, order: list[str]) -> pd.DataFrame:
    """Rows = labels in ``order``, columns = p (the no-p column first), cells 'mean ± std (n=k)'."""
    texts = numbers.assign(column=numbers["p"].map(p_column), text=cells(numbers, name))
    wide = texts.pivot(index="label", columns="column", values="text")
    ps = sorted(numbers["p"].dropna().unique())
    columns = ([NO_P] if numbers["p"].isna().any() else []) + [p_column(p) for p in ps]
    wide = wide.reindex(index=[label for label in order if label in wide.index], columns=columns).fillna("")
    return wide.rename_axis(index="regularizer", columns=None).reset_index()


def main_table(frame: pd.DataFrame, metric: str, split: str) -> Table:
    """The headline: test error (or accuracy) per regularizer and p."""
    name, unit = metric_name(metric, split), UNITS[metric]
    numbers = summarize(frame, metric_values(frame, metric, split), name)
    return Table(
        "main",
        f"{split} {metric} ({unit})",
        f"{split} {metric} in {unit}, mean ± sample std over seeds (n runs); {SPLIT_NOTES[split]}"
        + (f"; {NO_P}: regularizers that ignore p" if frame["p"].isna().any() else ""),
        grid(numbers, name, list(pd.unique(frame["label"]))),
        numbers,
    )


def families(frame: pd.DataFrame) -> pd.Series:
    """Each label's family (the method a best setting is chosen for; :mod:`labels`), the label
    itself in frames without one (a runs.csv of a report made before tuned keys)."""
    labels = frame.drop_duplicates("label")
    return pd.Series(
        (labels["family"] if "family" in labels else labels["label"]).to_numpy(), index=labels["label"]
    )


def choice_text(p: float, tuned: str) -> str:
    """The chosen setting: '0.25', '0.25, p_hidden=0.1', '—'."""
    chosen = NO_P if pd.isna(p) else f"{p:g}"
    return f"{chosen}, {tuned}" if isinstance(tuned, str) and tuned else chosen


def best_p_table(frame: pd.DataFrame, metric: str, split: str) -> Table:
    """Per regularizer (per family, when some settings are tuned), the p (and tuned setting)
    with the best mean validation metric (:func:`validation_choice`), and the test number there.

    Chosen on validation only: picking p by test accuracy would report an optimistic test number.
    Ties go to the smaller p.
    """
    name, unit = metric_name(metric, split), UNITS[metric]
    source, scale, larger, chosen_by = validation_choice(metric)
    heading = "val acc (%)" if larger else "val loss"
    val_name = source.removesuffix("_best")  # val/acc or val/loss
    val = summarize(frame, scale * frame[source], val_name)
    family = families(frame)
    val = val.assign(family=val["label"].map(family)).sort_values(["family", "p", "label"])
    best = val.groupby("family", sort=False)[f"{val_name}_mean"]
    chosen = val.loc[best.idxmax() if larger else best.idxmin(), ["family", *KEYS, f"{val_name}_mean"]]
    test = summarize(frame, metric_values(frame, metric, split), name)
    numbers = chosen.merge(test, on=KEYS, how="left")
    tuned = frame.drop_duplicates("label").set_index("label")["tuned"] if "tuned" in frame else None
    numbers["tuned"] = numbers["label"].map(tuned) if tuned is not None else ""
    order = {f: i for i, f in enumerate(pd.unique(frame["label"].map(family)))}
    numbers = numbers.sort_values("family", key=lambda fs: fs.map(order)).reset_index(drop=True)
    shown = pd.DataFrame(
        {
            "regularizer": numbers["family"],
            "best p": [choice_text(p, t) for p, t in zip(numbers["p"], numbers["tuned"], strict=True)],
            heading: numbers[f"{val_name}_mean"].map(lambda v: f"{v:.2f}" if larger else f"{v:.4f}"),
            f"{split} {metric} ({unit})": cells(numbers, name, with_n=False),
            "n": numbers["n"],
        }
    )
    is_tuned = (numbers["family"] != numbers["label"]).any()
    note = (
        f"p{' and the tuned settings' if is_tuned else ''} chosen by mean validation {chosen_by} "
        f"(at each run's best epoch), never by test; "
        f"{split} {metric} in {unit}, mean ± sample std over the n seeds at that p"
    )
    return Table("best_p", "best p per regularizer", note, shown, numbers)


def gap_table(frame: pd.DataFrame, split: str) -> Table:
    """Generalization gap, train acc - test acc in percentage points, per regularizer and p."""
    name = f"gap/{split}"
    numbers = summarize(frame, gap_points(frame["train/acc"], column(frame, f"{split}/acc")), name)
    note = (
        f"train/acc - {split}/acc in percentage points, mean ± sample std over seeds; train/acc is the last "
        "epoch's running training accuracy, measured with the regularizer on, so the gap may be negative"
    )
    return Table(
        "gap", "generalization gap (pp)", note, grid(numbers, name, list(pd.unique(frame["label"]))), numbers
    )


#: MC dropout columns: metric, scale, digits, heading
MC_METRICS = (("acc", 100, 2, "acc (%)"), ("nll", 1, 3, "NLL (nats)"), ("ece", 100, 2, "ECE (%)"))


def mc_table(frame: pd.DataFrame) -> Table | None:
    """Deterministic test metrics next to MC dropout's (test_mc/*), for the runs that have them."""
    if "test_mc/acc" not in frame or frame["test_mc/acc"].isna().all():
        return None
    runs = frame[frame["test_mc/acc"].notna()]
    numbers = runs.groupby(KEYS, dropna=False, sort=False).size().rename("n").reset_index()
    shown = pd.DataFrame(
        {"regularizer": numbers["label"], "p": numbers["p"].map(p_column), "n": numbers["n"]}
    )
    for metric, scale, digits, heading in MC_METRICS:
        for split in ("test", "test_mc"):
            name = f"{split}/{metric}"
            stats = summarize(runs, scale * column(runs, name), name).drop(columns="n")
            numbers = numbers.merge(stats, on=KEYS, how="left")
            shown[f"{split} {heading}"] = cells(numbers, name, digits, with_n=False)
    note = (
        "test: one deterministic pass (weight scaling); test_mc: MC dropout, the mean of T stochastic passes"
    )
    return Table("mc", "MC dropout vs deterministic test metrics", note, shown, numbers, text_columns=2)


def problems_table(problems: list[Problem]) -> Table:
    """Runs left out of every table, with the reason."""
    rows = sorted(problems, key=lambda problem: str(problem.folder))
    numbers = pd.DataFrame(
        {
            "run": [str(p.folder) for p in rows],
            "status": [p.status for p in rows],
            "reason": [p.reason for p in rows],
        }
    )
    note = "not finished, so left out of every table above"
    return Table("excluded", "runs left out", note, numbers, numbers, text_columns=3)
