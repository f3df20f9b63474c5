"""Per-example DropConnect's epoch against dropout's, at every p, as a user runs it.

Each row is one ``dropbench run model=mlp reg=dropconnect p=P epochs=2`` on real MNIST (the
default 800-800 MLP, all 55,000 training examples), timed by the run itself (``epoch_time_s``
in its ``metrics.json``: the training steps of an epoch), divided by the epoch of
``reg=dropout`` at the same p: the first epoch (which includes loading torch.compile's kernels,
about 2 s) and the second (what every later epoch of a run costs). Runs are interleaved
(dropout, DropConnect, per p) so that a busy spell of a shared host hits both sides alike.

    DROPBENCH_DATA=../shared/data python scripts/epoch_ratio.py [--p 0.1 0.2 0.3 0.5 0.7 0.9] \
        > results/dropconnect_epoch.md
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def epoch_seconds(reg: str, p: float, results: Path) -> tuple[float, float]:
    """The first and second epochs' training time of one fresh two-epoch run."""
    folder = results / f"{reg}-{p}"
    command = [sys.executable, "-m", "dropbench", "run", f"reg={reg}", f"p={p}", "epochs=2"]
    subprocess.run([*command, f"results_dir={folder}"], check=True, stdout=subprocess.DEVNULL)
    (path,) = folder.rglob("metrics.json")
    first, second = json.loads(path.read_text())["history"]
    return first["epoch_time_s"], second["epoch_time_s"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    args = parser.parse_args()
    print("# Per-example DropConnect epoch / dropout epoch (MLP 800-800, MNIST, batch 128)\n")
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| p | dropout epochs 1, 2 (s) | DropConnect epochs 1, 2 (s) | ratio, epoch 1 | ratio, epoch 2 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for p in args.p:
            d1, d2 = epoch_seconds("dropout", p, Path(tmp))
            c1, c2 = epoch_seconds("dropconnect", p, Path(tmp))
            row = f"| {p:g} | {d1:.2f}, {d2:.2f} | {c1:.2f}, {c2:.2f} | {c1 / d1:.2f} | {c2 / d2:.2f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
