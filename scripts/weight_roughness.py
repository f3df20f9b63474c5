"""Numbers for the weight maps: the median roughness and spread of each run's first-layer weights.

Roughness (``dropbench.weightmap.roughness``) is about 1 for white noise and near 0 for smooth
strokes and blobs; spread (``dropbench.weightmap.spread``) is how far a unit's weight energy
reaches from its centre, in pixels (about 11.4 for noise on 28 x 28; low for a localized
feature). ``dropbench report``'s weight-map figures show the roughness of one seed. This script
reads every ``weights.pt`` under the given sweep folders, groups runs by their folder without
the ``seed<N>`` level, and writes a Markdown table (mean ± std over seeds) and, for every group
beside a ``none`` group of the same sweep, dataset and model, the paired-by-seed difference of
each measure with its 95% paired-t interval and p-value (scipy.stats).

    python scripts/weight_roughness.py results/sweeps/mlp_p_curve results/sweeps/mlp_dropconnect \
        --out results/findings/weight_maps/roughness.md
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch
from scipy import stats

from dropbench.rundir import RunDir
from dropbench.weightmap import first_layer_weight, roughness, spread

MNIST_SHAPE = (1, 28, 28)
MEASURES = {"median roughness": roughness, "median spread (px)": spread}
#: {group folder (without seed): {seed folder name: {measure: value}}}
Groups = dict[str, dict[str, dict[str, float]]]


def measure(weight: torch.Tensor) -> dict[str, float]:
    return {name: f(weight, MNIST_SHAPE).median().item() for name, f in MEASURES.items()}


def measures_by_group(sweeps: list[Path]) -> Groups:
    groups: Groups = defaultdict(dict)
    for sweep in sweeps:
        for path in sorted(sweep.rglob(RunDir.WEIGHTS)):
            weight = first_layer_weight(torch.load(path, map_location="cpu", weights_only=True), MNIST_SHAPE)
            if weight is not None:
                group = f"{sweep.name}/{path.parent.parent.relative_to(sweep)}"
                groups[group][path.parent.name] = measure(weight)
    return groups


def mean_std(values: list[float]) -> str:
    spread_text = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread_text}"


def table(groups: Groups) -> str:
    header = " | ".join(f"{name}, mean ± std over seeds" for name in MEASURES)
    lines = [f"| runs | {header} | seeds |", "|---|" + "---|" * len(MEASURES) + "---|"]
    for group, by_seed in groups.items():
        cells = " | ".join(mean_std([m[name] for m in by_seed.values()]) for name in MEASURES)
        lines.append(f"| `{group}` | {cells} | {len(by_seed)} |")
    untrained = measure(torch.nn.Linear(784, 800).weight)
    lines.append(
        f"| untrained (PyTorch's default init) | {' | '.join(f'{v:.3f}' for v in untrained.values())} | 1 |"
    )
    return "\n".join(lines) + "\n"


def baseline_of(group: str, groups: Groups) -> str | None:
    """The ``none`` group of the same sweep, dataset and model (``sweep/dataset/model/reg/...``)."""
    sweep, dataset, model, *_ = group.split("/")
    return next(
        (g for g in groups if g.split("/")[:4] == [sweep, dataset, model, "none"] and g != group), None
    )


def paired(groups: Groups) -> str:
    """Each group minus its ``none`` group over their common seeds: mean, 95% CI, p (paired t)."""
    lines = [
        "| runs | minus | measure | difference, mean [95% CI] | p (paired t) | n |",
        "|---|---|---|---|---|---|",
    ]
    for group, by_seed in groups.items():
        base = baseline_of(group, groups)
        seeds = sorted(set(by_seed) & set(groups.get(base, {}))) if base else []
        for name in MEASURES if len(seeds) >= 2 else []:
            a = [by_seed[s][name] for s in seeds]
            b = [groups[base][s][name] for s in seeds]
            test = stats.ttest_rel(a, b)
            low, high = test.confidence_interval(0.95)
            interval = f"{statistics.mean(a) - statistics.mean(b):+.3f} [{low:+.3f}, {high:+.3f}]"
            lines.append(f"| `{group}` | `{base}` | {name} | {interval} | {test.pvalue:.3g} | {len(seeds)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweeps", nargs="+", type=Path, help="sweep folders with MNIST MLP or autoencoder runs"
    )
    parser.add_argument("--out", type=Path, help="also write the tables here")
    args = parser.parse_args()
    torch.manual_seed(0)  # the untrained row
    groups = measures_by_group(args.sweeps)
    comparisons = paired(groups)
    text = table(groups) + (f"\n{comparisons}" if comparisons else "")
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
