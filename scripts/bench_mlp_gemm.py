"""How close is one MLP training epoch to the bare matrix multiplications it needs?

Times dropbench's own ``train_epoch`` (MLP 784-800-800-10, dropout p=0.5, Adam, batch 128)
on real MNIST, and, in the same process and interleaved with it, the forward and backward
GEMMs of the same shapes on random tensors (no autograd, no data handling, no optimizer,
no activations). Reports the median of each and their ratio; writes results/ files.

    DROPBENCH_DATA=../shared/data python scripts/bench_mlp_gemm.py [--repeats 5] [--out results]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from functools import partial
from itertools import pairwise
from pathlib import Path

import torch

from dropbench.data import load_splits
from dropbench.models import MLP
from dropbench.regularizers import Dropout, l2_parameter_groups
from dropbench.train import train_epoch


def gemm_shapes(sizes: list[int], batch: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(a, b) operand shapes of every product an MLP step needs, forward and backward."""
    shapes = []
    for layer, (n_in, n_out) in enumerate(pairwise(sizes)):
        shapes.append(((batch, n_in), (n_in, n_out)))  # forward: X @ W^T
        shapes.append(((n_out, batch), (batch, n_in)))  # backward: dW = dY^T @ X
        if layer > 0:  # the input images need no gradient
            shapes.append(((batch, n_out), (n_out, n_in)))  # backward: dX = dY @ W
    return shapes


def time_gemms(sizes: list[int], n_examples: int, batch: int) -> float:
    """Seconds for one epoch's worth of the MLP's GEMMs (full batches plus the last partial one)."""
    full, rest = divmod(n_examples, batch)
    plans = [(full, gemm_shapes(sizes, batch))] + ([(1, gemm_shapes(sizes, rest))] if rest else [])
    operands = [
        (count, [(torch.randn(a), torch.randn(b), torch.empty(a[0], b[1])) for a, b in shapes])
        for count, shapes in plans
    ]
    start = time.perf_counter()
    for count, products in operands:
        for _ in range(count):
            for a, b, out in products:
                torch.mm(a, b, out=out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured epochs (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, nargs="+", default=[800, 800])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--root", default=os.environ.get("DROPBENCH_DATA", "./data"))
    args = parser.parse_args()

    data = load_splits(
        "mnist",
        "MNIST",
        args.root,
        {},
        True,
        False,
        5000,
        0,
        False,
        os.environ.get("DROPBENCH_CACHE", "~/.cache/dropbench"),
    )
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, args.hidden, drop=partial(Dropout, p=0.5))
    optimizer = torch.optim.Adam(
        l2_parameter_groups(model, 0.0), lr=1e-3, fused=True
    )  # as configs/optimizer/adam.yaml
    generator = torch.Generator().manual_seed(0)
    sizes = [784, *args.hidden, data.num_classes]
    n = len(data.train_y)

    def epoch() -> float:
        start = time.perf_counter()
        train_epoch(model, optimizer, data, args.batch_size, generator)
        return time.perf_counter() - start

    epoch(), time_gemms(sizes, n, args.batch_size)  # warm-up: allocator, thread pool, caches
    epochs, gemms = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine speed hit both alike
        epochs.append(epoch())
        gemms.append(time_gemms(sizes, n, args.batch_size))
    row = {
        "benchmark": "mlp_epoch_vs_gemm",
        "model": "mlp " + "-".join(map(str, sizes)),
        "reg": "dropout p=0.5",
        "batch_size": args.batch_size,
        "train_examples": n,
        "epoch_s_median": round(statistics.median(epochs), 4),
        "gemm_s_median": round(statistics.median(gemms), 4),
        "ratio": round(statistics.median(epochs) / statistics.median(gemms), 3),
        "repeats": args.repeats,
        "samples_per_s": round(n / statistics.median(epochs)),
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
    }
    write(args.out, row, epochs, gemms)


def write(out: Path, row: dict, epochs: list[float], gemms: list[float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "mlp_epoch_vs_gemm.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    lines = [
        "# One MLP epoch vs. the bare GEMMs it needs",
        "",
        "Made by `scripts/bench_mlp_gemm.py` on real MNIST (55,000 training examples after the",
        "5,000-example validation split). Bound: the same forward and backward matrix products on",
        "random tensors, timed in the same process, interleaved with the epochs.",
        "",
        "| " + " | ".join(row) + " |",
        "|" + "---|" * len(row),
        "| " + " | ".join(str(v) for v in row.values()) + " |",
        "",
        f"Epoch times (s): {', '.join(f'{t:.3f}' for t in epochs)}  ",
        f"GEMM times (s): {', '.join(f'{t:.3f}' for t in gemms)}",
        "",
    ]
    (out / "mlp_epoch_vs_gemm.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
