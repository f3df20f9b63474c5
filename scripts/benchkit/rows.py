"""From per-round measurements to CSV rows and target verdicts.

Every ratio is computed per round (both sides measured minutes apart at most, in the same
process) and summarised by its median over rounds, with the range where it matters.

A row's ``kind`` says what it measured: ``grid`` (one configuration's epoch), ``per_p`` (the
MLP's epoch with dropout or per-example DropConnect at one p) or ``layer`` (one 784->800
layer's forward + backward at batch 128: ``step_ms``, ``bound_s`` the dense layer's step,
``peak_mem_mib`` its live tensors; no epoch).
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path

from benchkit.dropconnect import P_VALUES, LayerResult, variant_name
from benchkit.grid import BATCH_SIZE, DROP_P, PER_P_GROUP, Config
from benchkit.measure import GroupResult
from dropbench.atomic import write_text_atomic

COLUMNS = [
    "kind",
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
    "step_ms",
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
        kind=result.group.kind,
        model=config.model,
        dataset=config.dataset,
        reg=config.reg,
        mask=config.mask or "",
        p="" if config.reg == "none" else config.p,
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
        other = result.config(reference, p=config.p)  # dropout at the same p
        if other is not None and other != config and config.reg != "none":
            row[column] = rounded(statistics.median(ratios(times, result.epoch_s[other])))
    return row


def all_rows(results: list[GroupResult], environment: dict) -> list[dict]:
    return [config_row(r, c, environment) for r in results for c in r.epoch_s]


#: (reg, mask, backend) of the layer variants, as :func:`benchkit.dropconnect.layer_steps` names them
LAYER_VARIANTS = (
    ("dropout", None, ""),
    ("dropconnect", "batch", "auto"),
    ("dropconnect", "example", "fused"),
)


def layer_row(layer: LayerResult, reg: str, mask: str | None, backend: str, p, environment: dict) -> dict:
    """One layer variant's row: its step against the dense layer's, and against dropout's."""
    name, dense = variant_name(reg, p, mask, backend), variant_name("none")
    times = layer.seconds[name]
    bound = ratios(times, layer.seconds[dense])
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        kind="layer",
        model=f"linear {layer.shape[0]}->{layer.shape[1]}",
        dataset="random",
        reg=reg,
        mask=mask or "",
        p="" if p is None else p,
        train_examples=layer.batch,
        batch_size=layer.batch,
        repeats=len(times),
        step_ms=rounded(1e3 * statistics.median(times), 3),
        samples_per_s=round(layer.batch / statistics.median(times)),
        bound_ops="nn.Linear forward + backward",
        bound_s=rounded(statistics.median(layer.seconds[dense]), 6),
        ratio_bound=rounded(statistics.median(bound)),
        ratio_bound_min=rounded(min(bound)),
        ratio_bound_max=rounded(max(bound)),
        peak_mem_mib=round(layer.peak[name] / 2**20, 2),
        **environment,
    )
    if reg == "dropconnect":
        dropout = layer.seconds[variant_name("dropout", p)]
        row["ratio_reg_over_dropout"] = rounded(statistics.median(ratios(times, dropout)))
    return row


def layer_rows(layer: LayerResult | None, environment: dict) -> list[dict]:
    """The dense layer's row, then every variant at every p."""
    if layer is None:
        return []
    rows = [layer_row(layer, "none", None, "", None, environment)]
    for p in layer.ps:
        rows += [
            layer_row(layer, reg, mask, backend, p, environment) for reg, mask, backend in LAYER_VARIANTS
        ]
    return rows


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
    p: float = DROP_P  # of both configurations (reg=none's is the default)
    group_kind: str = "grid"  # the group that measured them: "grid" or "per_p"


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
        3.0,
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
#: Issue 15: per-example DropConnect within 3x the dropout epoch at every p (the per_p group)
TARGETS += [
    Target(
        f"MLP on MNIST, p = {p}: DropConnect per example / dropout epoch",
        PER_P_GROUP,
        "over",
        ("dropconnect", "example"),
        3.0,
        other=("dropout", None),
        p=p,
        group_kind="per_p",
    )
    for p in P_VALUES
]
FIRST_STEP_LIMIT_S = 3.0
#: A fresh ``dropbench run reg=dropconnect p=0.2``'s first epoch / reg=dropout's (issue 15's acceptance)
FIRST_EPOCH_LIMIT = 3.0


def group_result(target: Target, results: list[GroupResult]) -> GroupResult | None:
    """The measured group (model, dataset) that ``target`` reads, or None if it was not measured."""
    group = (*target.group, target.group_kind)
    return next((r for r in results if (r.group.model, r.group.dataset, r.group.kind) == group), None)


def target_series(target: Target, results: list[GroupResult]) -> list[float] | None:
    """The target's per-round ratios, or None where its configurations were not measured."""
    result = group_result(target, results)
    config = result.config(*target.reg, p=target.p) if result else None
    if config is None:
        return None
    times = result.epoch_s[config]
    if target.kind == "bound":
        return ratios(times, result.bound_s)
    if target.kind == "baseline":
        return ratios(result.baseline_s, times) if result.baseline_s else None
    other = result.config(*target.other, p=target.p)
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
