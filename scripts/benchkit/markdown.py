"""The Markdown report: targets with verdicts, the per-configuration table, per-example
DropConnect at every p (MLP epochs, one layer), start-up and sweeps, and the protocol that
produced them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from benchkit.dropconnect import LayerResult, naive_mask_mib
from benchkit.extras import FirstEpoch, FirstStep, SweepTiming
from benchkit.grid import BATCH_SIZE, DROP_P, SUBSET
from benchkit.measure import GroupResult
from benchkit.rows import (
    FIRST_EPOCH_LIMIT,
    FIRST_STEP_LIMIT_S,
    TARGETS,
    speedup_ceiling,
    target_series,
    verdict,
)


@dataclass
class Meta:
    """How and where the benchmark ran."""

    command: str
    date: str
    device: str
    device_name: str
    threads: int
    torch: str
    repeats: int
    quick: bool
    memory_method: str
    subset: int = SUBSET


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(v) for v in row) + " |" for row in rows
    ]


def summary(values: list[float] | None, unit: str = "") -> tuple[str, str]:
    """(median, range) as text."""
    if not values:
        return "-", "-"
    return f"{statistics.median(values):.2f}{unit}", f"{min(values):.2f} to {max(values):.2f}{unit}"


def limit_row(text: str, values: list[float] | None, limit: float, unit: str = "") -> list[str]:
    """A target row of values that must be at most ``limit``."""
    median, spread = summary(values, unit)
    value = statistics.median(values) if values else None
    return [text, median, spread, f"<= {limit}{unit}", verdict(value, limit, True)]


def targets_section(
    results: list[GroupResult], first: FirstStep | None, epoch: FirstEpoch | None
) -> list[str]:
    rows = []
    for target in TARGETS:
        series = target_series(target, results)
        median, spread = summary(series)
        value = statistics.median(series) if series else None
        sign = "<=" if target.at_most else ">="
        rows.append(
            [
                target.text,
                median,
                spread,
                f"{sign} {target.limit}",
                verdict(value, target.limit, target.at_most),
            ]
        )
    steps = first.first_step_s if first else None
    text = "first training step after `dropbench run` starts (cache warm)"
    rows.append(limit_row(text, steps, FIRST_STEP_LIMIT_S, " s"))
    text = "a fresh `dropbench run reg=dropconnect p=0.2`: first epoch / reg=dropout's"
    rows.append(limit_row(text, epoch.ratios("epoch") if epoch else None, FIRST_EPOCH_LIMIT))
    note = "Ratios: median and range over rounds (see Protocol); the first step and epoch: over spawns."
    ceilings = []
    for target in TARGETS:
        series = speedup_ceiling(target, results)
        if series:
            median, spread = summary(series, "x")
            ceilings.append(
                f'- Ceiling of "{target.text}": the DataLoader epoch / the bound = {median} ({spread}),'
                " the speed-up of an epoch that took only its bare GEMMs/convolutions."
            )
    header = ["target", "median", "range", "limit", "verdict"]
    return ["## Targets", "", note, "", *table(header, rows), "", *ceilings, *([""] if ceilings else [])]


def configs_section(rows: list[dict]) -> list[str]:
    header = [
        "model",
        "dataset",
        "reg",
        "train examples",
        "epoch (s)",
        "samples/s",
        "x bound (range)",
        "bound",
        "DataLoader baseline (s), speed-up",
        "/ reg=none",
        "/ dropout",
        "peak MiB (+epoch)",
    ]
    body = []
    for r in (r for r in rows if r["kind"] == "grid"):
        reg = r["reg"] + (f" ({r['mask']})" if r["mask"] else "")
        baseline = (
            f"{r['baseline_s']:.2f}, {r['ratio_baseline_speedup']:.2f}x" if r["baseline_s"] != "" else ""
        )
        body.append(
            [
                r["model"],
                r["dataset"],
                reg,
                r["train_examples"],
                f"{r['epoch_s']:.3f}",
                r["samples_per_s"],
                f"{r['ratio_bound']:.2f} ({r['ratio_bound_min']:.2f}-{r['ratio_bound_max']:.2f})",
                r["bound_ops"],
                baseline,
                r["ratio_reg_over_none"],
                r["ratio_reg_over_dropout"],
                f"{r['peak_mem_mib']:.0f} (+{r['epoch_mem_mib']:.0f})",
            ]
        )
    return ["## Per configuration", "", *table(header, body), ""]


def per_p_section(rows: list[dict]) -> list[str]:
    """The MLP's epoch with dropout and per-example DropConnect at every p, one group."""
    by_p = {(r["p"], r["reg"]): r for r in rows if r["kind"] == "per_p"}
    if not by_p:
        return []
    header = [
        "p",
        "dropout epoch (s)",
        "DropConnect per example (s)",
        "samples/s",
        "/ dropout",
        "peak MiB (+epoch)",
    ]
    body = []
    for p in sorted({p for p, _ in by_p}):
        drop, dc = by_p[p, "dropout"], by_p[p, "dropconnect"]
        memory = f"{dc['peak_mem_mib']:.0f} (+{dc['epoch_mem_mib']:.0f})"
        body.append(
            [
                p,
                f"{drop['epoch_s']:.3f}",
                f"{dc['epoch_s']:.3f}",
                dc["samples_per_s"],
                dc["ratio_reg_over_dropout"],
                memory,
            ]
        )
    title = "## Per-example DropConnect at every p: MLP epoch"
    note = (
        f"The MLP on MNIST ({next(iter(by_p.values()))['train_examples']} training examples), dropout and "
        "DropConnect per example at each p, all in one group: every round times each of them once."
    )
    return [title, "", note, "", *table(header, body), ""]


def layer_section(rows: list[dict], layer: LayerResult | None) -> list[str]:
    """One layer's forward + backward per variant, against the dense layer's and dropout's."""
    if layer is None:
        return []
    cell = {(r["reg"], r["mask"], r["p"]): r for r in rows if r["kind"] == "layer"}
    dense = cell["none", "", ""]
    header = ["p", "dense ms", "dropout ms", "batch ms", "example ms", "example / dense", "example / dropout"]
    header.append("example peak MiB")
    body = []
    for p in layer.ps:
        example = cell["dropconnect", "example", p]
        steps = [cell[key]["step_ms"] for key in (("dropout", "", p), ("dropconnect", "batch", p))]
        ratios = [example["ratio_bound"], example["ratio_reg_over_dropout"], example["peak_mem_mib"]]
        body.append([p, dense["step_ms"], *steps, example["step_ms"], *ratios])
    (n_in, n_out), batch = layer.shape, layer.batch
    naive = naive_mask_mib(layer.shape, batch)
    note = (
        f"One {n_in}->{n_out} layer, batch {batch}, forward + backward (no input gradient), median of "
        f"{len(layer.seconds['dense'])} round-robin rounds. Peak: the live tensors allocated during "
        f"one step (torch.profiler); a naive per-example mask alone would be {naive:.0f} MiB."
    )
    return ["## Per-example DropConnect at every p: one layer", "", note, "", *table(header, body), ""]


def first_epoch_lines(epoch: FirstEpoch) -> list[str]:
    pairs = "; ".join(
        f"{d.epoch_s[0]:.2f} / {c.epoch_s[0]:.2f} s (wall {d.wall_s:.1f} / {c.wall_s:.1f} s)"
        for d, c in zip(epoch.dropout, epoch.dropconnect, strict=True)
    )
    runs = f"`dropbench run {' '.join(epoch.overrides)} epochs=1`"
    return [
        f"- fresh {runs}, `reg=dropout` then `reg=dropconnect`, {len(epoch.dropout)} pairs: the "
        f"first epoch (`epoch_time_s`) and the wall time from spawn to exit, dropout / DropConnect: "
        f"{pairs}. Median ratios: epoch {summary(epoch.ratios('epoch'))[0]}, wall "
        f"{summary(epoch.ratios('wall'))[0]}.",
    ]


def extras_section(first: FirstStep | None, epoch: FirstEpoch | None, sweep: SweepTiming | None) -> list[str]:
    lines = ["## Start-up and sweeps", ""]
    if first is not None:
        log_median, _ = summary(first.log_line_s, " s")
        step_median, _ = summary(first.first_step_s, " s")
        runs = ", ".join(f"{s:.2f}" for s in first.first_step_s)
        lines += [
            f"- `dropbench run {' '.join(first.overrides)}`, dataset cache warm, median of "
            f"{len(first.first_step_s)}: the `training:` log line after {log_median}, the first optimizer "
            f"step done after {step_median} (each: {runs} s), counted from just before the spawn.",
            f"- of which no dropbench code can cut: `python -c 'import torch, torch._dynamo'` takes "
            f"{summary(first.import_floor_s, ' s')[0]} here (torch.optim imports torch._dynamo when the "
            "first optimizer is built).",
        ]
    if epoch is not None:
        lines += first_epoch_lines(epoch)
    if sweep is not None:
        lines += [
            f"- sweep of {sweep.runs} runs, `dropbench run -m {' '.join(sweep.overrides)}`: serial (basic "
            f"launcher, torch's default threads) {sweep.serial_s:.1f} s, joblib launcher "
            f"(`hydra.launcher.n_jobs={sweep.n_jobs}`, dropbench splits the cores between the workers) "
            f"{sweep.parallel_s:.1f} s: serial / parallel = {sweep.serial_s / sweep.parallel_s:.2f}. "
            "One measurement each, not interleaved.",
        ]
    if first is None and epoch is None and sweep is None:
        lines.append("Skipped (--skip-extras).")
    return [*lines, ""]


def protocol_section(meta: Meta, results: list[GroupResult]) -> list[str]:
    sizes = ", ".join(f"{r.group.label} {r.train_examples}" for r in results)
    return [
        "## Protocol",
        "",
        "- Every configuration is built as `dropbench run` builds it (the real config composed with "
        f"Hydra: Adam, fused, with the cosine schedule, batch {BATCH_SIZE}, p = {DROP_P}) and trained "
        "with dropbench's `train_epoch` on its whole-tensor data.",
        f"- Training examples per epoch: {sizes}. MLP on MNIST uses the whole training split (55,000 "
        f"after the 5,000-example validation split); the other groups a fixed seeded subset of "
        f"{meta.subset} (`dataset.train_size`), to keep the run within minutes on 2 cores.",
        "- One process. Per group (one model on one dataset): a warm-up of a few steps of everything, "
        f"then {meta.repeats} rounds, each one epoch of every regularizer in turn, then the bound, then "
        "the baseline epoch. Every ratio is taken within a round and reported as the median over rounds "
        "(with the range where shown); a slow spell of the machine slows both sides of a ratio.",
        "- Bound: one epoch's worth of the same forward and backward matrix products (Linear: Y = XW^T, "
        "dW, dX) and convolutions (forward, and `aten.convolution_backward` for the input and weight "
        "gradients), same shapes and layouts, on random tensors: no autograd, activations, pooling, "
        "biases, loss, regularizer, optimizer or data handling; no input gradient for the first layer. "
        "LSTM: the gate GEMMs, the input projection of all steps as one GEMM and one recurrent GEMM per "
        "step, backward likewise (dW_ih, dW_hh, dX one GEMM each, dh one per step); not the fused kernel.",
        "- Baseline (MLP on MNIST, CNN on CIFAR-10, reg=dropout): the same model, optimizer, schedule and "
        "training examples fed by torchvision's `MNIST`/`CIFAR10` dataset object (per-sample PIL image, "
        "`ToTensor`, `Normalize` with the same statistics; for CIFAR-10 `RandomCrop(32, padding=4)` and "
        "`RandomHorizontalFlip` first) through `DataLoader(batch_size=128, shuffle=True)` with the "
        "settings of pytorch/examples `mnist/main.py`: on the CPU nothing else (num_workers=0), on CUDA "
        "num_workers=1, persistent_workers, pin_memory. The loop is the example's `train()`.",
        f"- Peak memory ({meta.memory_method}): on the CPU the process's peak resident set during the "
        "epoch, all that was resident included (Python, torch, the group's data and models); in "
        "brackets the increase over the resident set at the epoch's start, what the epoch itself needed "
        "at its peak (activations, masks, the epoch's shuffled copy of the training split). Largest over "
        "rounds. On CUDA, tensors allocated (`max_memory_allocated`).",
        "- Start-up: see above; the dataset cache is warmed in the harness's process first.",
        "- Per-example DropConnect at every p: the MLP rows are one more group (`kind` per_p in the CSV), "
        "measured like the others; the layer rows (`kind` layer) time each variant's forward + backward "
        "on random data, round-robin, each ratio the median over rounds of the ratio within a round.",
        "",
    ]


def markdown(
    meta: Meta,
    rows: list[dict],
    results,
    first: FirstStep | None,
    epoch: FirstEpoch | None,
    sweep: SweepTiming | None,
    layer: LayerResult | None = None,
) -> str:
    lines = [
        "# Training speed: dropbench epochs against their bounds and a DataLoader baseline",
        "",
        f"Made by `{meta.command}` on {meta.date}. Device: {meta.device} ({meta.device_name}), "
        f"{meta.threads} torch threads, torch {meta.torch}; {meta.repeats} measured rounds after a warm-up.",
        "",
    ]
    if meta.quick:
        lines += [
            "**A --quick run**: a few hundred examples and small models, to check that the harness works. "
            "Its numbers say nothing about speed, and its verdicts nothing about the targets.",
            "",
        ]
    lines += targets_section(results, first, epoch)
    lines += configs_section(rows)
    lines += per_p_section(rows)
    lines += layer_section(rows, layer)
    lines += extras_section(first, epoch, sweep)
    lines += protocol_section(meta, results)
    return "\n".join(lines)
