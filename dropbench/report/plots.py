"""The report's figures, one (dataset, model) group each: metric vs p, training curves at the
best p, first-layer weight maps, reliability diagrams and MC dropout against T. Built on
``matplotlib.figure.Figure`` (Agg, no pyplot), so no window opens and no global figure state
leaks between calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dropbench.metrics import ECE_BINS
from dropbench.rundir import RunDir
from dropbench.tasks import Reconstruction
from dropbench.weightmap import first_layer_weight, roughness, weight_grid

PANELS_PER_ROW = 4


def colors(labels: list[str]) -> dict[str, str]:
    """One color per row label, the same in every figure of the report."""
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def same_p(values: pd.Series, p: float) -> pd.Series:
    """Rows whose p equals ``p``; NaN (a reg that ignores p) matches NaN."""
    return values.isna() if pd.isna(p) else values == p


def with_p(label: str, p: float) -> str:
    return label if pd.isna(p) else f"{label}, p={p:g}"


def metric_vs_p(
    numbers: pd.DataFrame, name: str, heading: str, title: str, palette: dict[str, str]
) -> Figure:
    """Mean ± std of the headline metric against p, one line per regularizer; regularizers that
    ignore p are dashed horizontal lines (their ±std as a light band)."""
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for label, rows in numbers.groupby("label", sort=False):
        mean, std, color = rows[f"{name}_mean"], rows[f"{name}_std"].fillna(0), palette[label]
        if rows["p"].isna().all():
            m, s = mean.iloc[0], std.iloc[0]
            ax.axhline(m, linestyle="--", color=color, label=f"{label}, no p")
            ax.axhspan(m - s, m + s, color=color, alpha=0.1, linewidth=0)
        else:
            ax.errorbar(rows["p"], mean, yerr=std, marker="o", capsize=3, color=color, label=label)
    ax.set(title=title, xlabel="drop probability p", ylabel=f"{heading}, mean ± std over seeds")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")  # outside: never hides a point
    return fig


def mean_history(histories: list[list[dict]]) -> pd.DataFrame:
    """Per-epoch mean over seeds of every numeric history column (null values skipped)."""
    rows = pd.DataFrame([row for history in histories for row in history])
    return rows.apply(pd.to_numeric, errors="coerce").groupby("epoch").mean()


def curves(
    frame: pd.DataFrame,
    best: pd.DataFrame,
    histories: dict[str, list[dict]],
    title: str,
    palette: dict[str, str],
) -> Figure | None:
    """Train (solid) and validation (dashed) loss and accuracy per epoch, mean over seeds, for each
    regularizer at its best p."""
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    drawn = []
    for label, p in zip(best["label"], best["p"], strict=True):
        runs = frame[(frame["label"] == label) & same_p(frame["p"], p)]
        history = mean_history([histories[run] for run in runs["run"] if histories.get(run)])
        if history.empty:
            continue
        color = palette[label]
        marker = "o" if len(history) == 1 else None  # one epoch is a point: a line alone draws nothing
        for split, style in (("train", "-"), ("val", "--")):
            if f"{split}/loss" in history:
                loss_ax.plot(history.index, history[f"{split}/loss"], style, color=color, marker=marker)
            if f"{split}/acc" in history:
                acc_ax.plot(history.index, 100 * history[f"{split}/acc"], style, color=color, marker=marker)
            elif f"{split}/mse" in history:  # a reconstruction
                acc_ax.plot(history.index, 1000 * history[f"{split}/mse"], style, color=color, marker=marker)
        drawn.append(Line2D([], [], color=color, label=f"{with_p(label, p)} (n={len(runs)})"))
    if not drawn:
        return None
    if (frame["task"] == Reconstruction.name).all():
        loss_ax.set(title="loss", xlabel="epoch", ylabel="reconstruction loss per pixel")
        acc_ax.set(title="reconstruction error", xlabel="epoch", ylabel="MSE per pixel (×10⁻³)")
    else:
        loss_ax.set(title="loss", xlabel="epoch", ylabel="cross-entropy (nats)")
        acc_ax.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    styles = [
        Line2D([], [], color="gray", linestyle=s, label=n) for s, n in (("-", "train"), ("--", "validation"))
    ]
    fig.legend(handles=drawn + styles, loc="outside right upper", fontsize="small")
    fig.suptitle(f"{title}: training curves at each regularizer's best p (mean over seeds)")
    return fig


def first_grid(runs: pd.DataFrame, in_shape: tuple[int, int, int]) -> tuple[torch.Tensor, float] | None:
    """The weight grid of the lowest-seed run that saved its weights and its units' median
    roughness, or None."""
    for folder in runs.sort_values("seed")["run"]:
        path = RunDir(Path(folder)).weights
        if path.is_file():
            weight = first_layer_weight(torch.load(path, map_location="cpu", weights_only=True), in_shape)
            if weight is not None:
                return weight_grid(weight, in_shape), roughness(weight, in_shape).median().item()
    return None


def weight_maps(
    frame: pd.DataFrame, best: pd.DataFrame, in_shape: tuple[int, int, int] | None, title: str
) -> Figure | None:
    """First-layer weights of each regularizer at its best p (first seed), side by side."""
    if in_shape is None:
        return None
    panels = []
    for label, p in zip(best["label"], best["p"], strict=True):
        drawn = first_grid(frame[(frame["label"] == label) & same_p(frame["p"], p)], in_shape)
        if drawn is not None:
            grid, rough = drawn
            panels.append((f"{with_p(label, p)}\nmedian roughness {rough:.2f}", grid))
    if not panels:
        return None
    columns = min(len(panels), PANELS_PER_ROW)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(3.2 * columns, 3.4 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, grid) in zip(axes, panels, strict=False):  # the last row may have empty axes
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize="small")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(
        f"{title}: first-layer weights, first 100 hidden units\n"
        "(each tile min-max scaled; roughness: 1 = white noise, 0 = smooth)",
        fontsize="medium",
    )
    return fig


def first_reconstructions(runs: pd.DataFrame) -> dict | None:
    """The saved test images and reconstructions of the lowest-seed run that has them."""
    for folder in runs.sort_values("seed")["run"]:
        path = RunDir(Path(folder)).reconstructions
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
    return None


def reconstructions(frame: pd.DataFrame, best: pd.DataFrame, title: str) -> Figure | None:
    """The same test images, then their reconstruction by each regularizer at its best p (first
    seed), one row each: what each regularizer keeps and loses of an image, at a glance."""
    rows, originals = [], None
    for label, p in zip(best["label"], best["p"], strict=True):
        saved = first_reconstructions(frame[(frame["label"] == label) & same_p(frame["p"], p)])
        if saved is not None:
            originals = saved["originals"] if originals is None else originals
            rows.append((with_p(label, p), saved["reconstructions"]))
    if not rows:
        return None
    rows.insert(0, ("original", originals))
    fig = Figure(figsize=(12, 0.9 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False).ravel()
    for ax, (name, images) in zip(axes, rows, strict=True):
        strip = torch.cat(list(images.float().clamp(0, 1)), dim=-1)  # (C, H, N*W) side by side
        ax.imshow(
            strip.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{title}: test images (top) and their reconstructions at each regularizer's best p")
    return fig


#: The predictors a reliability diagram compares: (recorded split, panel title)
RELIABILITY_SPLITS = (("test", "weight scaling"), ("test_mc", "MC dropout"))


def pool_bins(recorded: list[dict]) -> dict[str, np.ndarray]:
    """One reliability diagram of several runs' bins (``metrics.json`` ``reliability``): counts
    add up, and each bin's accuracy and mean confidence are over all its examples (null: empty)."""
    count = np.sum([np.asarray(bins["count"], dtype=float) for bins in recorded], axis=0)

    def pooled(key: str) -> np.ndarray:
        sums = [np.nan_to_num(np.array(b[key], dtype=float)) * np.asarray(b["count"]) for b in recorded]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sum(sums, axis=0) / count  # empty bins: 0/0, NaN, not drawn

    return {"count": count, "accuracy": pooled("accuracy"), "confidence": pooled("confidence")}


def diagram(bar_ax, count_ax, bins: dict[str, np.ndarray], title: str, color: str) -> None:
    """Accuracy per equal-width confidence bin as bars against the diagonal (perfect calibration),
    over the bin counts (log scale) underneath."""
    edges = np.linspace(0, 1, len(bins["count"]) + 1)
    width, left = np.diff(edges), edges[:-1]
    filled = bins["count"] > 0
    bar_ax.bar(left[filled], bins["accuracy"][filled], width[filled], align="edge", color=color, alpha=0.7)
    bar_ax.plot(bins["confidence"][filled], bins["accuracy"][filled], ".", color="black", markersize=4)
    bar_ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1)
    bar_ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    bar_ax.grid(alpha=0.3)
    count_ax.bar(left[filled], bins["count"][filled], width[filled], align="edge", color="gray")
    # from 1 up: a log axis spanning decades labels only its decades
    top = max(bins["count"].max(), 1) * 2
    count_ax.set(xlim=(0, 1), yscale="log", ylim=(0.8, top), xlabel="confidence (max softmax probability)")
    count_ax.set_ylabel("examples")


def reliability(
    frame: pd.DataFrame, best: pd.DataFrame, bins_by_run: dict[str, dict], title: str, palette: dict[str, str]
) -> Figure | None:
    """Reliability diagrams of weight scaling and MC dropout side by side, one row per
    regularizer at its best p that has MC metrics, the bins pooled over its seeds; each panel
    titled with the mean ECE over those seeds."""
    rows = []
    for label, p in zip(best["label"], best["p"], strict=True):
        runs = frame[(frame["label"] == label) & same_p(frame["p"], p)]
        runs = runs[
            [all(s in bins_by_run.get(run, {}) for s, _ in RELIABILITY_SPLITS) for run in runs["run"]]
        ]
        if not runs.empty:
            rows.append((label, p, runs))
    if not rows:
        return None
    fig = Figure(figsize=(10, 4.6 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(2 * len(rows), 2, height_ratios=[3, 1] * len(rows), squeeze=False)
    for i, (label, p, runs) in enumerate(rows):
        for j, (split, name) in enumerate(RELIABILITY_SPLITS):
            bins = pool_bins([bins_by_run[run][split] for run in runs["run"]])
            ece = 100 * runs[f"{split}/ece"].mean() if f"{split}/ece" in runs else float("nan")
            heading = f"{with_p(label, p)}: {name}\nECE {ece:.2f}% (mean of n={len(runs)})"
            diagram(axes[2 * i, j], axes[2 * i + 1, j], bins, heading, palette[label])
    fig.suptitle(
        f"{title}: reliability at each regularizer's best p, bins pooled over seeds\n"
        "(bars: accuracy per confidence bin; dots: at the bin's mean confidence; dashed: calibrated)"
    )
    return fig


def interval_point(ax, row: pd.Series, at: float, color: str, vertical: bool = False) -> None:
    """One paired comparison's mean difference and 95% interval, placed at ``at`` on the other
    axis (the differences run along x, or along y when ``vertical``); the point is filled when
    its verdict is resolved, hollow when not."""
    error = [[row["diff_mean"] - row["ci_low"]], [row["ci_high"] - row["diff_mean"]]]
    x, y = (at, row["diff_mean"]) if vertical else (row["diff_mean"], at)
    bars = {"yerr": error} if vertical else {"xerr": error}
    face = color if row["verdict"] != "not resolved" else "white"
    ax.errorbar(x, y, **bars, fmt="o", capsize=3, color=color, markerfacecolor=face)


def forest(
    rows: pd.DataFrame, heading: str, title: str, palette: dict[str, str], unit: str = "pp"
) -> Figure | None:
    """One line per paired comparison (first on top): the mean difference as a point, its 95%
    interval as a bar, a vertical line at 0. Filled points are resolved verdicts, hollow ones not;
    comparisons without an interval (n<2) are left out."""
    rows = rows[rows["ci_low"].notna()]
    if rows.empty:
        return None
    longest = max(len(f"{c} ({v})") for c, v in zip(rows["comparison"], rows["verdict"], strict=True))
    # the labels sit left of the axes: long ones (many settings) would squeeze the axes to nothing
    fig = Figure(figsize=(max(9.0, 6 + 0.08 * longest), 1.5 + 0.4 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    ys = range(len(rows) - 1, -1, -1)
    for y, (_, row) in zip(ys, rows.iterrows(), strict=True):
        interval_point(ax, row, y, palette.get(row["a"], "C0"))
    ax.axvline(0, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(
        list(ys), labels=[f"{c} ({v})" for c, v in zip(rows["comparison"], rows["verdict"], strict=True)]
    )
    ax.set(title=title, xlabel=f"{heading} difference A - B ({unit}), mean and 95% paired-t interval")
    ax.grid(alpha=0.3, axis="x")
    return fig


#: MC dropout's curve panels: (recorded metric, panel title, y label)
CURVE_PANELS = (
    ("acc", "test error", "test error (%)"),
    ("nll", "test NLL", "negative log-likelihood (nats per example)"),
    ("ece", "test ECE", f"expected calibration error (%, {ECE_BINS} bins)"),
)
#: What a run's deterministic ``test/*`` is, by its ``reg.inference`` (DropConnect); else weight scaling
DETERMINISTIC_NAMES = {
    "gaussian": "Gaussian inference (moment matching)",
    "gaussian_sampled": "Gaussian inference (sampled)",
}
WEIGHT_SCALING = "weight scaling"


#: A recorded metric's factor to the figure's unit: error and ECE in %, NLL in nats
CURVE_SCALE = {"acc": 100.0, "nll": 1.0, "ece": 100.0}


def curve_value(metric: str, values) -> np.ndarray:
    """A recorded acc, nll or ece in the figure's unit; acc is shown as the error, 1 - acc."""
    values = np.asarray(values, dtype=float)
    return CURVE_SCALE[metric] * (1 - values if metric == "acc" else values)


def deterministic_name(runs: pd.DataFrame) -> str:
    """What the runs' ``test/*`` is: weight scaling, or DropConnect's Gaussian inference."""
    inference = runs["reg.inference"].dropna() if "reg.inference" in runs else pd.Series(dtype=object)
    return DETERMINISTIC_NAMES.get(inference.iloc[0], WEIGHT_SCALING) if len(inference) else WEIGHT_SCALING


def curve_points(curves: list[dict]) -> pd.DataFrame:
    """Every run's MC curve (``metrics.json`` ``mc_curve``) as rows t, acc, nll, ece."""
    return pd.concat(
        [pd.DataFrame({"t": c["t"], **{m: c[f"test_mc/{m}"] for m, _, _ in CURVE_PANELS}}) for c in curves]
    )


def mc_curve(
    frame: pd.DataFrame,
    best: pd.DataFrame,
    curves_by_run: dict[str, dict],
    title: str,
    palette: dict[str, str],
) -> Figure | None:
    """MC dropout's test error, NLL and ECE against the number of passes T averaged (log axis),
    one line per regularizer at its best p that recorded ``mc_curve``: mean over seeds with a
    ±std band; the same runs' deterministic ``test/*`` (weight scaling, or DropConnect's Gaussian
    inference) as a dashed line of the same colour. None when no run has a curve."""
    rows = []
    for label, p in zip(best["label"], best["p"], strict=True):
        runs = frame[(frame["label"] == label) & same_p(frame["p"], p)]
        runs = runs[[bool(curves_by_run.get(run)) for run in runs["run"]]]
        if not runs.empty:
            rows.append((label, p, runs))
    if not rows:
        return None
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, len(CURVE_PANELS))
    handles, ladder, names = [], set(), set()
    for label, p, runs in rows:
        color = palette[label]
        points = curve_points([curves_by_run[run] for run in runs["run"]]).groupby("t")
        mean, std = points.mean(), points.std().fillna(0)  # sample std; one seed: no band
        ladder.update(mean.index)
        name = deterministic_name(runs)
        names.add(name)
        for ax, (metric, _, _) in zip(axes, CURVE_PANELS, strict=True):
            m, s = curve_value(metric, mean[metric]), CURVE_SCALE[metric] * std[metric].to_numpy()
            ax.plot(mean.index, m, marker="o", markersize=3, color=color)
            ax.fill_between(mean.index, m - s, m + s, color=color, alpha=0.15, linewidth=0)
            if f"test/{metric}" in runs:
                ax.axhline(curve_value(metric, runs[f"test/{metric}"].mean()), linestyle="--", color=color)
        noted = "" if name == WEIGHT_SCALING else f"; dashed: {name}"
        handles.append(
            Line2D([], [], color=color, marker="o", label=f"{with_p(label, p)} (n={len(runs)}){noted}")
        )
    ticks = sorted(ladder)
    for ax, (_, heading, ylabel) in zip(axes, CURVE_PANELS, strict=True):
        ax.set_xscale("log")
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.minorticks_off()
        ax.set(title=heading, xlabel="T, stochastic passes averaged (log scale)", ylabel=ylabel)
        ax.grid(alpha=0.3)
    dashed = (
        WEIGHT_SCALING
        if names == {WEIGHT_SCALING}
        else f"deterministic test/* ({WEIGHT_SCALING} unless noted)"
    )
    styles = [
        Line2D([], [], color="gray", marker="o", label="MC dropout after T passes, mean ± std over seeds"),
        Line2D([], [], color="gray", linestyle="--", label=f"{dashed}, mean over seeds"),
    ]
    # below the panels: a legend at the right would run into the title with long row labels
    fig.legend(handles=handles + styles, loc="outside lower center", ncols=2, fontsize="small")
    fig.suptitle(f"{title}: MC dropout against T at each regularizer's best p, vs deterministic inference")
    return fig
