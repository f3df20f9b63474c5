"""What does variational (time-locked) dropout cost an LSTM training step on the CPU?

Times forward + backward of one single-layer LSTM on an MNIST-shaped batch (128 sequences of
28 rows x 28 pixels, hidden 128, 2 threads, random data) for
  (a) ``nn.LSTM``, the fused kernel, no dropout;
  (b) ``VariationalLSTM`` with p = 0.25 on the input, recurrent and output masks;
  (c) ``NaiveDropoutLSTM`` with p = 0.25 per-step dropout on inputs and outputs;
  (d) the same variational LSTM as (b) written as a plain autograd loop over time steps, the
      obvious implementation that (b)'s hand-written recurrence replaces.
Each round times every variant once, in a rotating order, and takes its ratio to (a) in that
round, so slow spells of a shared machine largely cancel; the table shows medians over rounds.

    python scripts/bench_variational.py [--rounds 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dropbench.regularizers.variational import LSTMMasks, NaiveDropoutLSTM, VariationalLSTM, variational_masks


def autograd_loop_lstm(lstm: nn.LSTM, x: torch.Tensor, masks: LSTMMasks) -> torch.Tensor:
    """Variational LSTM as autograd sees it step by step: one GEMM for the inputs, a loop for the rest."""
    batch, steps, _ = x.shape
    w_ih, w_hh, b_ih, b_hh = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
    gates_x = torch.addmm(b_ih + b_hh, (x * masks.input.unsqueeze(1)).view(batch * steps, -1), w_ih.t())
    h = c = x.new_zeros(batch, lstm.hidden_size)
    outputs = []
    for gates_t in gates_x.view(batch, steps, -1).unbind(1):
        i, f, g, o = torch.addmm(gates_t, h * masks.hidden, w_hh.t()).chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        outputs.append(h)
    return torch.stack(outputs, 1) * masks.output.unsqueeze(1)


def variants(x: torch.Tensor, hidden: int, p: float) -> dict[str, Callable[[], torch.Tensor]]:
    """Name -> a function running one forward pass that returns the output sequence."""
    features = x.shape[2]
    fused = nn.LSTM(features, hidden, batch_first=True)
    variational = VariationalLSTM(features, hidden, p, p, p)
    naive = NaiveDropoutLSTM(features, hidden, p, p)
    loop = nn.LSTM(features, hidden, batch_first=True)

    def draw() -> LSTMMasks:
        return variational_masks(x.shape[0], features, hidden, p, p, p)

    return {
        "(a) nn.LSTM, fused, no dropout": lambda: fused(x)[0],
        f"(b) VariationalLSTM, p={p} x3": lambda: variational(x)[0],
        f"(c) NaiveDropoutLSTM, per-step p={p} in/out": lambda: naive(x)[0],
        "(d) variational, plain autograd loop": lambda: autograd_loop_lstm(loop, x, draw()),
    }


def time_step(forward: Callable[[], torch.Tensor]) -> float:
    """Seconds for one forward + backward (a loss on the whole output sequence)."""
    start = time.perf_counter()
    forward().square().mean().backward()
    return time.perf_counter() - start


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (each times every variant once)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--p", type=float, default=0.25, help="drop probability of every mask")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 28, 28)  # MNIST: 28 steps (rows) of 28 features (pixels)
    runs = variants(x, args.hidden, args.p)
    names = list(runs)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-args.warmup, args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        timed = {name: time_step(runs[name]) for name in order}
        if r >= 0:
            for name in names:
                seconds[name].append(timed[name])
                ratios[name].append(timed[name] / timed[names[0]])

    print(f"torch {torch.__version__}, {cpu_name()}, {args.threads} threads")
    print(f"batch {args.batch}, 28 steps x 28 features, hidden {args.hidden}, {args.rounds} rounds\n")
    print("| variant | median fwd+bwd (ms) | median ratio vs (a) |")
    print("|---|---:|---:|")
    for name in names:
        ms = 1e3 * statistics.median(seconds[name])
        print(f"| {name} | {ms:.1f} | {statistics.median(ratios[name]):.2f} |")


if __name__ == "__main__":
    main()
