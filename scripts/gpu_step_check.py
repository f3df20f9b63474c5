"""The training step against its bound, with ``compile=off`` and ``compile=on`` (issue 15, item 3).

- MLP (784-800-800-10, dropout p = 0.5) on MNIST-shaped data: one step / its GEMMs alone;
- CNN (dropout p = 0.5) on CIFAR-10-shaped data, with its crop + flip: one step / its
  convolutions and GEMMs alone (``benchkit.bounds``, the bound of ``scripts/bench.py``);
- the variational LSTM on MNIST rows: one step / the step of ``reg=none``, which runs cuDNN's
  fused LSTM (eager: the reference kernel).

Models, optimizer and schedule are built as ``dropbench run`` builds them (batch 128), on
synthetic data of the real shapes (a step's time does not depend on pixel values, and no data
files need to reach the machine). Every step of an epoch is a full batch, so ``compile=on``
runs compiled throughout; its first epoch, which compiles, is reported apart. Targets on a GPU
(issue 15): MLP <= 3x, CNN <= 3x its bound, variational LSTM <= 2x cuDNN's. Prints a
Markdown table (and writes it to ``--out``); each row is printed as soon as it is measured.
Not yet run on a GPU: compiling the variational LSTM (a loop of 28 steps) is likely the
longest part; ``--only`` and ``--modes`` split the check into shorter runs.

    python scripts/gpu_step_check.py                     # CUDA; a few minutes, most of it compiling
    python scripts/gpu_step_check.py --only mlp,cnn --modes on --out results/gpu_step.md
    python scripts/gpu_step_check.py --device cpu --quick   # smoke test: tiny models, 3 steps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from benchkit.bounds import Bound
from benchkit.grid import BATCH_SIZE, QUICK_MODELS, Built, build_config
from benchkit.machine import device_name
from benchkit.measure import dropbench_epoch, timed

from dropbench import checks
from dropbench.data import DataSplits


@dataclass(frozen=True)
class Case:
    """One model's check: its data shape, its regularizer, and what its step is compared with."""

    model: str
    dataset: str  # whose shape and classes the synthetic data has
    shape: tuple[int, int, int]
    reg: str
    reference: str  # "bound", or a reg whose eager step is the reference
    limit: float
    steps: int  # full batches per timed epoch


CASES = {
    "mlp": Case("mlp", "mnist", (1, 28, 28), "dropout", "bound", 3.0, 200),
    "cnn": Case("cnn", "cifar10", (3, 32, 32), "dropout", "bound", 3.0, 100),
    "lstm": Case("lstm", "mnist", (1, 28, 28), "variational", "none", 2.0, 100),
}
QUICK_STEPS = 3


def synthetic_splits(case: Case, n: int, device: torch.device) -> DataSplits:
    """Normalised-looking random images and labels of ``case``'s shape, on ``device``."""
    generator = torch.Generator().manual_seed(0)
    c = case.shape[0]

    def images(k: int) -> torch.Tensor:
        return torch.randn(k, *case.shape, generator=generator).to(device)

    def labels(k: int) -> torch.Tensor:
        return torch.randint(0, 10, (k,), generator=generator).to(device)

    return DataSplits(
        train_x=images(n),
        train_y=labels(n),
        val_x=images(BATCH_SIZE),
        val_y=labels(BATCH_SIZE),
        test_x=images(BATCH_SIZE),
        test_y=labels(BATCH_SIZE),
        classes=[str(k) for k in range(10)],
        augment=case.dataset == "cifar10",  # crop + flip, as dropbench trains CIFAR-10
        origin="synthetic",
        mean=(0.5,) * c,
        std=(0.25,) * c,
    )


def build(case: Case, reg: str, mode: str, data: DataSplits, device: torch.device, quick: bool) -> Built:
    overrides = [f"model={case.model}", f"dataset={case.dataset}", f"reg={reg}", "p=0.5"]
    overrides += [f"batch_size={BATCH_SIZE}", f"device={device}", f"compile={mode}", "dataset.verify=false"]
    built, _ = build_config(overrides + (QUICK_MODELS[case.model] if quick else []), data)
    return built


def step_seconds(built: Built, data: DataSplits, repeats: int, device: torch.device) -> tuple[float, float]:
    """(the first epoch's seconds, which compile; the median step of ``repeats`` later epochs)."""
    generator = torch.Generator(device=device).manual_seed(0)
    first = timed(lambda: dropbench_epoch(built, data, generator), device)
    epochs = [timed(lambda: dropbench_epoch(built, data, generator), device) for _ in range(repeats)]
    return first, statistics.median(epochs) / (len(data.train_y) // BATCH_SIZE)


def bound_seconds(built: Built, data: DataSplits, repeats: int, device: torch.device) -> float:
    """One step's GEMMs and convolutions alone (median over ``repeats`` epochs, after one)."""
    bound = Bound(built.model, data.shape, len(data.train_y), BATCH_SIZE, device)
    bound.epoch()
    return statistics.median(timed(bound.epoch, device) for _ in range(repeats)) / bound.full


def check(case: Case, modes: list[str], device: torch.device, quick: bool, repeats: int):
    """Rows (model, compile, first epoch s, step ms, reference, reference ms, ratio) of ``case``."""
    data = synthetic_splits(case, (QUICK_STEPS if quick else case.steps) * BATCH_SIZE, device)
    if case.reference == "bound":
        name = "GEMM bound" if case.model == "mlp" else "conv + GEMM bound"
        reference = bound_seconds(build(case, case.reg, "off", data, device, quick), data, repeats, device)
    else:
        name = f"reg={case.reference}, compile=off (cuDNN's LSTM)"
        reference = step_seconds(
            build(case, case.reference, "off", data, device, quick), data, repeats, device
        )[1]
    for mode in modes:
        first, step = step_seconds(build(case, case.reg, mode, data, device, quick), data, repeats, device)
        yield [
            case.model,
            case.reg,
            mode,
            f"{first:.1f}",
            f"{1e3 * step:.3f}",
            name,
            f"{1e3 * reference:.3f}",
        ] + [
            f"{step / reference:.2f}",
            f"<= {case.limit:g}",
            "met" if step / reference <= case.limit else "MISSED",
        ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--modes", default="off,on", help="compile settings to run, of off, on (auto too)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs after the first (--quick 1)")
    parser.add_argument(
        "--quick", action="store_true", help=f"tiny models, {QUICK_STEPS} steps: a smoke test"
    )
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    args.only, args.modes = args.only.split(","), args.modes.split(",")
    if set(args.only) - set(CASES) or set(args.modes) - {"off", "on", "auto"}:
        parser.error(f"--only takes {', '.join(CASES)}; --modes takes off, on, auto")
    return args


def main() -> None:
    args = parse_args()
    device = checks.device("--device", args.device)
    repeats = 1 if args.quick else args.repeats
    header = ["model", "reg", "compile", "first epoch s", "step ms", "reference", "reference ms", "ratio"]
    header += ["target", "verdict"]
    lines = [
        f"# Training step / its bound, compile off and on ({device_name(device)}, torch {torch.__version__})",
        "",
        f"`python scripts/gpu_step_check.py {' '.join(sys.argv[1:])}`; batch {BATCH_SIZE}, median of "
        f"{repeats} epochs after the first (which compiles), synthetic data of the real shapes.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    print("\n".join(lines), flush=True)
    start = time.perf_counter()
    for name in args.only:
        for row in check(CASES[name], args.modes, device, args.quick, repeats):
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
            if args.out:
                args.out.write_text("\n".join(lines) + "\n")
    print(f"\n({time.perf_counter() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
