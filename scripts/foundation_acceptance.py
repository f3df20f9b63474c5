"""Re-run the foundation issue's acceptance runs on real data and tabulate them.

    DROPBENCH_DATA=../shared/data python scripts/foundation_acceptance.py [--out results/foundation]

Each row is one ``dropbench run`` (3 epochs, dropout p=0.5, defaults otherwise); the table is
read back from the runs' ``metrics.json`` files, never from their output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# (label, overrides, test/acc target)
RUNS = [
    ("MLP on MNIST", ["model=mlp", "dataset=mnist"], 0.97),
    ("CNN on MNIST", ["model=cnn", "dataset=mnist"], 0.98),
    ("LSTM on MNIST", ["model=lstm", "dataset=mnist"], 0.95),
    # dataset.root points nowhere, so the data must come from Debian's package
    (
        "MLP on Fashion-MNIST, offline",
        ["model=mlp", "dataset=fashion_mnist", "dataset.root=/nonexistent"],
        None,
    ),
]


def run(overrides: list[str], out: Path) -> tuple[dict, float]:
    """One ``dropbench run``; returns its metrics.json and the command's wall time."""
    before = set(out.rglob("metrics.json"))
    start = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "dropbench",
        "run",
        "reg=dropout",
        "p=0.5",
        "epochs=3",
        f"results_dir={out}",
        *overrides,
    ]
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    [new] = set(out.rglob("metrics.json")) - before
    return json.loads(new.read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/foundation"))
    args = parser.parse_args()
    lines = [
        "# Foundation acceptance runs",
        "",
        "`dropbench run reg=dropout p=0.5 epochs=3` plus the overrides below, on real data",
        "(`DROPBENCH_DATA=../shared/data`; Fashion-MNIST from Debian's package), CPU, 2 threads.",
        "Made by `scripts/foundation_acceptance.py`; the run folders are beside this file.",
        "",
        "| run | overrides | test/acc | target | val/acc (best epoch) | test_last/acc | samples/s "
        "| command wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, overrides, target in RUNS:
        record, wall = run(overrides, args.out)
        final = record["final"]
        verdict = (
            "-" if target is None else f">= {target:.2f} {'met' if final['test/acc'] >= target else 'MISSED'}"
        )
        lines.append(
            f"| {label} | `{' '.join(overrides)}` | {final['test/acc']:.4f} | {verdict} | "
            f"{final['val/acc']:.4f} ({record['best']['epoch']}) | {final['test_last/acc']:.4f} | "
            f"{record['train_samples_per_s']:.0f} | {wall:.1f} |"
        )
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
