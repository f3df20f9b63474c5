"""What does each regularizer cost a training epoch, against its baseline, on real MNIST?

Builds each case exactly as ``dropbench run`` would (the real config, composed with Hydra),
trains one warm-up epoch each (allocator, torch.compile of DropConnect's kernels), then
rounds of one epoch per case in turn; each ratio is taken within a round, so slow spells of
a shared machine largely cancel, and the median over rounds is reported with the issue's
target.

    DROPBENCH_DATA=../shared/data python scripts/bench_regularizers.py [--rounds 3] [--out results]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dropbench.app import build, build_training
from dropbench.preflight import config_dir
from dropbench.settings import check_knobs
from dropbench.train import train_epoch

CASES = {
    "mlp, dropout": ["model=mlp", "reg=dropout"],
    "mlp, dropconnect per batch": ["model=mlp", "reg=dropconnect", "reg.mask=batch"],
    "mlp, dropconnect per example": ["model=mlp", "reg=dropconnect", "reg.mask=example"],
    "lstm, none (fused nn.LSTM)": ["model=lstm", "reg=none"],
    "lstm, variational": ["model=lstm", "reg=variational"],
}
#: (case, baseline, target ratio) from the regularizer issue
RATIOS = [
    ("mlp, dropconnect per batch", "mlp, dropout", 1.3),
    ("mlp, dropconnect per example", "mlp, dropout", 5.0),
    ("lstm, variational", "lstm, none (fused nn.LSTM)", 2.0),
]


def build_case(overrides: list[str], root: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "dataset=mnist", "p=0.5", f"dataset.root={root}"])
    knobs = check_knobs(OmegaConf.to_container(cfg, resolve=True))
    data = build("dataset", cfg.dataset, device=knobs.device)
    model, optimizer, scheduler = build_training(cfg, knobs, data)
    return data, model, optimizer, scheduler, knobs.batch_size


def epoch_seconds(case) -> float:
    data, model, optimizer, scheduler, batch_size = case
    start = time.perf_counter()
    train_epoch(model, optimizer, data, batch_size, torch.Generator().manual_seed(0), scheduler)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured epochs per case (after a warm-up)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--root", default=os.environ.get("DROPBENCH_DATA", "./data"))
    args = parser.parse_args()
    cases = {name: build_case(overrides, args.root) for name, overrides in CASES.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(args.rounds + 1):
        for name, case in cases.items():
            seconds = epoch_seconds(case)
            if round_:  # round 0 is the warm-up
                times[name].append(seconds)
    lines = [
        "# Regularizer overhead per training epoch (real MNIST, batch 128, p = 0.5)",
        "",
        f"Made by `scripts/bench_regularizers.py`; cpu ({platform.machine()}, {torch.get_num_threads()} "
        f"threads), torch {torch.__version__}, {args.rounds} rounds after a warm-up round.",
        "",
        "| case | median epoch (s) | epochs (s) |",
        "|---|---|---|",
        *(
            f"| {n} | {statistics.median(t):.2f} | {', '.join(f'{x:.2f}' for x in t)} |"
            for n, t in times.items()
        ),
        "",
        "| ratio | median over rounds | range | target |",
        "|---|---|---|---|",
    ]
    for case, base, target in RATIOS:
        ratios = [a / b for a, b in zip(times[case], times[base], strict=True)]
        median = statistics.median(ratios)
        verdict = "met" if median <= target else "MISSED"
        lines.append(
            f"| {case} / {base} | {median:.2f} | {min(ratios):.2f} to {max(ratios):.2f} | "
            f"<= {target} {verdict} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "regularizer_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
