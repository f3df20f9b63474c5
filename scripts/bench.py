"""Speed harness: dropbench's training epochs against their bounds and a DataLoader baseline.

For each model (mlp, cnn, lstm) x dataset family (MNIST, CIFAR-10) x regularizer that applies
(none, dropout, DropConnect per batch and per example, spatial, variational): median epoch
time, samples/s, peak memory, and three ratios measured in the same process and round: epoch
/ the bare GEMMs and convolutions (``benchkit.bounds``), DataLoader baseline / epoch
(``benchkit.baseline``), epoch / the reg=none epoch. Per-example DropConnect at every p: the
MLP's epoch against dropout's at the same p (one group, interleaved rounds), and one 784->800
layer's forward + backward at batch 128 with its peak memory (``benchkit.dropconnect``). Also
the time from ``dropbench run`` to its first training step, a fresh run's first epoch with
DropConnect against dropout's, and a small sweep serial vs. with the joblib launcher. Writes
``OUT/benchmarks.csv`` (one row per configuration, ``kind`` grid, per_p or layer) and
``OUT/benchmarks.md`` (targets, tables, protocol).

    DROPBENCH_DATA=../shared/data python scripts/bench.py            # 20-25 minutes on 2 CPU cores
    DROPBENCH_DATA=../shared/data python scripts/bench.py --quick    # smoke test, a few minutes
    python scripts/bench.py --only mlp,mnist --repeats 5 --skip-extras
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
from benchkit import extras
from benchkit.dropconnect import LAYER, LAYER_REPEATS, P_VALUES, QUICK_LAYER, QUICK_P_VALUES, measure_layer
from benchkit.grid import DATASETS, MODELS, QUICK_TRAIN, REGS, SUBSET, common_overrides, plan
from benchkit.machine import device_name
from benchkit.markdown import Meta, markdown
from benchkit.measure import measure_group, release_memory
from benchkit.rows import all_rows, csv_text, layer_rows, write_atomic

from dropbench import checks
from dropbench.build import compose_config, instantiate_group


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke test: {QUICK_TRAIN} examples, small models, a sub-grid"
    )
    parser.add_argument(
        "--repeats", type=int, help="measured rounds after the warm-up (default 3; --quick 2)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated models, datasets and/or regs to keep, e.g. mlp,cnn or lstm,mnist "
        "(they intersect; reg=none and reg=dropout always stay: the ratios need them)",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="where benchmarks.md/.csv go")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--subset", type=int, default=SUBSET, help="training examples of every group but MLP on MNIST"
    )
    parser.add_argument("--skip-extras", action="store_true", help="skip the start-up and sweep timings")
    args = parser.parse_args()
    known = {*MODELS, *DATASETS, *(reg for reg, _ in REGS)}
    args.only = {token.strip() for token in args.only.split(",") if token.strip()}
    if args.only - known:
        parser.error(
            f"--only: unknown {', '.join(sorted(args.only - known))}; valid: {', '.join(sorted(known))}"
        )
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def run_extras(quick: bool, device: str, subset: int):
    """Start-up latency (median of 3, --quick 1), a fresh run's first epoch with per-example
    DropConnect at p = 0.2 against dropout's (3 pairs, --quick 1) and a small sweep serial vs. joblib."""
    train = QUICK_TRAIN if quick else None
    mlp = ["model=mlp", "dataset=mnist", *common_overrides("mlp", train, quick, device)]
    mlp = [o for o in mlp if not o.startswith("p=")]  # the default, 0.5, or the first epoch's own
    first_overrides = [*mlp, "reg=dropout"]
    cfg = compose_config(first_overrides)
    instantiate_group("dataset", cfg.dataset, device="cpu")  # the latency is measured with the cache warm
    first = extras.first_step([*first_overrides, "epochs=1"], repeats=1 if quick else 3)
    print(f"bench: first step after {', '.join(f'{s:.2f}' for s in first.first_step_s)} s", file=sys.stderr)
    epoch = extras.first_epoch([*mlp, f"p={FIRST_EPOCH_P}"], repeats=1 if quick else 3)
    ratios = ", ".join(f"{r:.2f}" for r in epoch.ratios("epoch"))
    print(f"bench: fresh run's first epoch, DropConnect / dropout: {ratios}", file=sys.stderr)
    seeds, epochs, runs = ("0", 1, 2) if quick else ("0,1", 2, 4)
    sweep_overrides = [
        "model=mlp",
        "reg=none,dropout",
        f"seed={seeds}",
        f"epochs={epochs}",
        *common_overrides("mlp", QUICK_TRAIN if quick else subset, quick, device),
    ]
    sweep = extras.sweep(sweep_overrides, runs)
    print(f"bench: sweep serial {sweep.serial_s:.1f} s, joblib {sweep.parallel_s:.1f} s", file=sys.stderr)
    return first, epoch, sweep


#: The p of the fresh first-epoch runs: the issue's acceptance command, `reg=dropconnect p=0.2`
FIRST_EPOCH_P = 0.2


def main() -> None:
    args = parse_args()
    device = checks.device("--device", args.device)
    repeats = args.repeats or (2 if args.quick else 3)
    groups = plan(args.only, args.quick, str(device), args.subset)
    # the extras first: they take about two minutes, and fail early if a launcher is missing
    extra = (None,) * 3 if args.skip_extras else run_extras(args.quick, str(device), args.subset)
    results = []
    for group in groups:
        results.append(measure_group(group, repeats, device))
        release_memory(device)
    layer = None
    if any(g.kind == "per_p" for g in groups) and device.type == "cpu":  # the fused kernels are the CPU's
        quick = (QUICK_P_VALUES, 2, QUICK_LAYER) if args.quick else (P_VALUES, LAYER_REPEATS, LAYER)
        layer = measure_layer(*quick)
    environment = {
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    rows = all_rows(results, environment) + layer_rows(layer, environment)
    meta = Meta(
        command=" ".join(["python scripts/bench.py", *sys.argv[1:]]),
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        repeats=repeats,
        quick=args.quick,
        memory_method=results[0].memory_method if results else "",
        subset=args.subset,
        **environment,
    )
    text = markdown(meta, rows, results, *extra, layer)
    write_atomic(args.out / "benchmarks.csv", csv_text(rows))
    write_atomic(args.out / "benchmarks.md", text)
    print(text)


if __name__ == "__main__":
    main()
