"""Per-example DropConnect's epoch against dropout's, at every p, as a user runs it.

Each row is one ``dropbench run model=mlp reg=dropconnect p=P epochs=2`` on real MNIST (the
default 800-800 MLP, all 55,000 training examples), timed by the run itself (``epoch_time_s``
in its ``metrics.json``: the training steps of an epoch), divided by the epoch of
``reg=dropout`` at the same p: the first epoch (which includes loading torch.compile's kernels)
and the second (what every later epoch of a run costs). Runs are interleaved (dropout,
DropConnect, per p) so that a busy spell of a shared host hits both sides alike. The runs are
``benchkit.dropconnect.fresh_run``'s, which ``scripts/bench.py`` uses for its first-epoch row.

    DROPBENCH_DATA=../shared/data python scripts/epoch_ratio.py [--p 0.1 0.2 0.3 0.5 0.7 0.9] \
        [--threads 1] > results/dropconnect_epoch.md
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from benchkit.dropconnect import P_VALUES, fresh_run
from benchkit.machine import cpu_name


def epoch_seconds(reg: str, p: float, results: Path, threads: int | None) -> list[float]:
    """The first and second epochs' training time of one fresh two-epoch run."""
    overrides = [f"reg={reg}", f"p={p}", "epochs=2", *([f"threads={threads}"] if threads else [])]
    return fresh_run(overrides, results / f"{reg}-{p}").epoch_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, nargs="+", default=list(P_VALUES))
    parser.add_argument(
        "--threads", type=int, help="the runs' torch threads (default: torch's, one per core)"
    )
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    print("# Per-example DropConnect epoch / dropout epoch (MLP 800-800, MNIST, batch 128)\n")
    print(f"{cpu_name()}, {threads} threads, torch {torch.__version__}\n")
    print("| p | dropout epochs 1, 2 (s) | DropConnect epochs 1, 2 (s) | ratio, epoch 1 | ratio, epoch 2 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for p in args.p:
            d1, d2 = epoch_seconds("dropout", p, Path(tmp), args.threads)
            c1, c2 = epoch_seconds("dropconnect", p, Path(tmp), args.threads)
            row = f"| {p:g} | {d1:.2f}, {d2:.2f} | {c1:.2f}, {c2:.2f} | {c1 / d1:.2f} | {c2 / d2:.2f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
