"""From per-round measurements to CSV rows and target verdicts.

Every ratio is computed per round (both sides measured minutes apart at most, in the same
process) and summarised by its median over rounds, with the range where it matters.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path

from benchkit.grid import BATCH_SIZE, DROP_P, Config
from benchkit.measure import GroupResult
from dropbench.atomic import write_text_atomic

COLUMNS = [
    "model",
    "dataset",
    "reg",
    "mask",
    "p",
    "device",
    "device_name",
    "threads",
    "train_examples",
    "batch_size",
    "repeats",
    "epoch_s",
    "epoch_s_min",
    "epoch_s_max",
    "samples_per_s",
    "bound_ops",
    "bound_s",
    "ratio_bound",
    "ratio_bound_min",
    "ratio_bound_max",
    "baseline_s",
    "ratio_baseline_speedup",
    "ratio_reg_over_none",
    "ratio_reg_over_dropout",
    "peak_mem_mib",
    "epoch_mem_mib",
    "torch",
]
RATIO_COLUMNS = [c for c in COLUMNS if c.startswith("ratio_")]


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-round ratios."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits)


def config_row(result: GroupResult, config: Config, environment: dict) -> dict:
    """One CSV row: the configuration, its median epoch and every ratio that applies to it."""
    times, median = result.epoch_s[config], statistics.median(result.epoch_s[config])
    bound = ratios(times, result.bound_s)
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        model=config.model,
        dataset=config.dataset,
        reg=config.reg,
        mask=config.mask or "",
        p="" if config.reg == "none" else DROP_P,
        train_examples=result.train_examples,
        batch_size=BATCH_SIZE,
        repeats=len(times),
        epoch_s=rounded(median, 4),
        epoch_s_min=rounded(min(times), 4),
        epoch_s_max=rounded(max(times), 4),
        samples_per_s=round(result.train_examples / median),
        bound_ops="+".join(result.bound_kinds),
        bound_s=rounded(statistics.median(result.bound_s), 4),
        ratio_bound=rounded(statistics.median(bound)),
        ratio_bound_min=rounded(min(bound)),
        ratio_bound_max=rounded(max(bound)),
        peak_mem_mib=round(max(result.peak_mib[config]), 1),
        epoch_mem_mib=round(max(result.increase_mib[config]), 1),
        **environment,
    )
    if config.reg == "dropout" and result.baseline_s:
        row["baseline_s"] = rounded(statistics.median(result.baseline_s), 4)
        row["ratio_baseline_speedup"] = rounded(statistics.median(ratios(result.baseline_s, times)))
    for column, reference in (("ratio_reg_over_none", "none"), ("ratio_reg_over_dropout", "dropout")):
        other = result.config(reference)
        if other is not None and other != config and config.reg != "none":
            row[column] = rounded(statistics.median(ratios(times, result.epoch_s[other])))
    return row


def all_rows(results: list[GroupResult], environment: dict) -> list[dict]:
    return [config_row(r, c, environment) for r in results for c in r.epoch_s]


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Readers never see half a file (dropbench's one atomic writer)."""
    write_text_atomic(path, text)


@dataclass(frozen=True)
class Target:
    """One speed target of the issue, as a ratio measured per round."""

    text: str
    group: tuple[str, str]  # (model, dataset)
    kind: str  # "bound": epoch / bound; "baseline": baseline epoch / epoch; "over": epoch / other's epoch
    reg: tuple[str, str | None]  # (reg, mask)
    limit: float
    at_most: bool = True  # the ratio must be <= limit (else >= limit)
    other: tuple[str, str | None] | None = None  # the denominator of kind "over"


TARGETS = [
    Target("MLP on MNIST, dropout: epoch / GEMM bound", ("mlp", "mnist"), "bound", ("dropout", None), 1.3),
    Target(
        "MLP on MNIST, dropout: speed-up over the DataLoader baseline",
        ("mlp", "mnist"),
        "baseline",
        ("dropout", None),
        4.0,
        at_most=False,
    ),
    Target(
        "CNN on CIFAR-10, dropout: epoch / conv+GEMM bound",
        ("cnn", "cifar10"),
        "bound",
        ("dropout", None),
        1.5,
    ),
    Target(
        "CNN on CIFAR-10, dropout: speed-up over the DataLoader baseline (same augmentation)",
        ("cnn", "cifar10"),
        "baseline",
        ("dropout", None),
        3.0,
        at_most=False,
    ),
    Target(
        "MLP on MNIST: DropConnect per batch / dropout epoch",
        ("mlp", "mnist"),
        "over",
        ("dropconnect", "batch"),
        1.3,
        other=("dropout", None),
    ),
    Target(
        "MLP on MNIST: DropConnect per example / dropout epoch",
        ("mlp", "mnist"),
        "over",
        ("dropconnect", "example"),
        5.0,
        other=("dropout", None),
    ),
    Target(
        "LSTM on MNIST: variational / no-dropout fused nn.LSTM epoch",
        ("lstm", "mnist"),
        "over",
        ("variational", None),
        2.0,
        other=("none", None),
    ),
    Target(
        "CNN on CIFAR-10: spatial dropout / dropout epoch",
        ("cnn", "cifar10"),
        "over",
        ("spatial", None),
        1.1,
        other=("dropout", None),
    ),
]
FIRST_STEP_LIMIT_S = 3.0


def group_result(target: Target, results: list[GroupResult]) -> GroupResult | None:
    """The measured group (model, dataset) that ``target`` reads, or None if it was not measured."""
    return next((r for r in results if (r.group.model, r.group.dataset) == target.group), None)


def target_series(target: Target, results: list[GroupResult]) -> list[float] | None:
    """The target's per-round ratios, or None where its configurations were not measured."""
    result = group_result(target, results)
    config = result.config(*target.reg) if result else None
    if config is None:
        return None
    times = result.epoch_s[config]
    if target.kind == "bound":
        return ratios(times, result.bound_s)
    if target.kind == "baseline":
        return ratios(result.baseline_s, times) if result.baseline_s else None
    other = result.config(*target.other)
    return ratios(times, result.epoch_s[other]) if other else None


def speedup_ceiling(target: Target, results: list[GroupResult]) -> list[float] | None:
    """For a baseline target: the baseline epoch over the bound, per round, i.e. the speed-up an
    epoch that took no more than its bare GEMMs/convolutions would reach. A target above it
    cannot be met by any implementation on this machine."""
    result = group_result(target, results)
    if target.kind != "baseline" or result is None or not result.baseline_s:
        return None
    return ratios(result.baseline_s, result.bound_s)


def verdict(value: float | None, limit: float, at_most: bool) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if at_most else value >= limit) else "MISSED"
