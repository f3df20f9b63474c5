"""Finding 8's numbers: the median roughness of each run's first-layer weight maps, per run group.

Roughness (``dropbench.weightmap.roughness``) is about 1 for white noise and near 0 for
smooth strokes and blobs; the weight-map figures of ``dropbench report`` show the same number for
one seed. This script reads every ``weights.pt`` under the given sweep folders, groups runs by
their folder without the ``seed<N>`` level, and writes a Markdown table (mean ± std over seeds).

    python scripts/weight_roughness.py results/sweeps/mlp_p_curve results/sweeps/mlp_dropconnect \
        --out results/findings/weight_maps/roughness.md
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from dropbench.rundir import RunDir
from dropbench.weightmap import first_layer_weight, roughness

MNIST_SHAPE = (1, 28, 28)


def median_roughness(path: Path) -> float | None:
    weight = first_layer_weight(torch.load(path, map_location="cpu", weights_only=True), MNIST_SHAPE)
    return None if weight is None else roughness(weight, MNIST_SHAPE).median().item()


def table(sweeps: list[Path]) -> str:
    groups: dict[str, list[float]] = defaultdict(list)
    for sweep in sweeps:
        for path in sorted(sweep.rglob(RunDir.WEIGHTS)):
            value = median_roughness(path)
            if value is not None:
                groups[f"{sweep.name}/{path.parent.parent.relative_to(sweep)}"].append(value)
    lines = ["| runs | median roughness, mean ± std over seeds | seeds |", "|---|---|---|"]
    for group, values in groups.items():
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        lines.append(f"| `{group}` | {statistics.mean(values):.3f}{spread} | {len(values)} |")
    untrained = roughness(torch.nn.Linear(784, 800).weight, MNIST_SHAPE).median().item()
    lines.append(f"| untrained (PyTorch's default init) | {untrained:.3f} | 1 |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders with MNIST MLP runs")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.manual_seed(0)  # the untrained row
    text = table(args.sweeps)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
