"""How close is one MLP training epoch to the bare matrix multiplications it needs?

Trains the model, optimizer and schedule that ``dropbench run model=mlp reg=dropout p=0.5``
builds (784-800-800-10, fused Adam, cosine, batch 128) on real MNIST with dropbench's own
``train_epoch``, and after each epoch times one epoch's worth of the bare GEMMs it needs
(forward and backward, same shapes and memory layouts, random tensors: no autograd, no
activations, no optimizer, no data handling). The ratio is taken per (epoch, GEMMs) pair, so
slow spells of a shared machine largely cancel, and the median over pairs is reported.

    DROPBENCH_DATA=../shared/data python scripts/bench_mlp_gemm.py [--repeats 9] [--out results]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from itertools import pairwise
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dropbench.app import build, build_training
from dropbench.preflight import config_dir
from dropbench.settings import check_knobs
from dropbench.train import train_epoch


def layer_products(n_in: int, n_out: int, batch: int, first: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (a, b) operands of every product one linear layer needs in a step, laid out in memory
    as autograd lays them out (weights are out x in, so the forward reads W transposed)."""
    x, w, grad_y = torch.randn(batch, n_in), torch.randn(n_out, n_in), torch.randn(batch, n_out)
    products = [(x, w.t()), (grad_y.t(), x)]  # forward X @ W^T; backward dW = dY^T @ X
    if not first:  # the input images need no gradient
        products.append((grad_y, w))  # backward dX = dY @ W
    return products


def time_gemms(sizes: list[int], n_examples: int, batch: int) -> float:
    """Seconds for one epoch's worth of the MLP's GEMMs (full batches, then the last partial one)."""
    full, rest = divmod(n_examples, batch)
    seconds = 0.0
    for count, rows in [(full, batch), (1 if rest else 0, rest)]:
        products = [
            (a, b, torch.empty(a.shape[0], b.shape[1]))
            for i, (n_in, n_out) in enumerate(pairwise(sizes))
            for a, b in layer_products(n_in, n_out, rows, first=i == 0)
        ]
        start = time.perf_counter()
        for _ in range(count):
            for a, b, out in products:
                torch.mm(a, b, out=out)
        seconds += time.perf_counter() - start
    return seconds


def build_default_mlp(args: argparse.Namespace):
    """The data, model, optimizer and schedule of the real config, composed with Hydra."""
    overrides = [
        "model=mlp",
        "reg=dropout",
        "p=0.5",
        "dataset=mnist",
        f"batch_size={args.batch_size}",
        f"model.hidden={args.hidden}",
        f"dataset.root={args.root}",
        f"epochs={args.repeats + 1}",
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    knobs = check_knobs(OmegaConf.to_container(cfg, resolve=True))
    data = build("dataset", cfg.dataset, device=knobs.device)
    return (data, *build_training(cfg, knobs, data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="measured epochs (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, nargs="+", default=[800, 800])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--root", default=os.environ.get("DROPBENCH_DATA", "./data"))
    args = parser.parse_args()

    data, model, optimizer, scheduler = build_default_mlp(args)
    n = len(data.train_y)
    sizes = [data.shape[0] * data.shape[1] * data.shape[2], *args.hidden, data.num_classes]
    generator = torch.Generator().manual_seed(0)
    epoch_s, gemm_s = [], []
    for repeat in range(args.repeats + 1):  # the first pair is a warm-up: allocator, thread pool, caches
        start = time.perf_counter()
        train_epoch(model, optimizer, data, args.batch_size, generator, scheduler)
        epoch, gemms = time.perf_counter() - start, time_gemms(sizes, n, args.batch_size)
        if repeat:
            epoch_s.append(epoch)
            gemm_s.append(gemms)
    ratios = [e / g for e, g in zip(epoch_s, gemm_s, strict=True)]
    row = {
        "benchmark": "mlp_epoch_vs_gemm",
        "model": "mlp " + "-".join(map(str, sizes)),
        "reg": "dropout p=0.5",
        "optimizer": "adam (fused) + cosine",
        "batch_size": args.batch_size,
        "train_examples": n,
        "epoch_s_median": round(statistics.median(epoch_s), 4),
        "gemm_s_median": round(statistics.median(gemm_s), 4),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "repeats": args.repeats,
        "samples_per_s": round(n / statistics.median(epoch_s)),
        "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
    }
    write(args.out, row, epoch_s, gemm_s)


def write(out: Path, row: dict, epoch_s: list[float], gemm_s: list[float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "mlp_epoch_vs_gemm.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    lines = [
        "# One MLP epoch vs. the bare GEMMs it needs",
        "",
        "Made by `scripts/bench_mlp_gemm.py` on real MNIST (55,000 training examples after the",
        "5,000-example validation split), with the model, optimizer and schedule `dropbench run`",
        "builds by default. Bound: the same forward and backward matrix products (shapes and",
        "memory layouts) on random tensors, timed right after each epoch; `ratio` is the median",
        "over (epoch, GEMMs) pairs of epoch time / GEMM time, with its minimum and maximum.",
        "Target (foundation issue): <= 1.5.",
        "",
        "| " + " | ".join(row) + " |",
        "|" + "---|" * len(row),
        "| " + " | ".join(str(v) for v in row.values()) + " |",
        "",
        f"Epoch times (s): {', '.join(f'{t:.3f}' for t in epoch_s)}  ",
        f"GEMM times (s): {', '.join(f'{t:.3f}' for t in gemm_s)}",
        "",
    ]
    (out / "mlp_epoch_vs_gemm.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
