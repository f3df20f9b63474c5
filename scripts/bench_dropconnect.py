"""How much do DropConnect's per-batch and per-example masks cost next to Dropout, on the CPU?

Times forward + backward of one layer (784->800 and 800->800, batch 128): nn.Linear followed
by inverted ``Dropout`` on its output, ``DropConnectLinear(mask="batch")`` and
``DropConnectLinear(mask="example")``, the latter also with its fused (torch.compile) kernels
switched off; then one whole MLP training step (784-800-800-10 on
random data, cross-entropy, Adam) with Dropout after both hidden layers vs DropConnect hidden
layers. Variants run round-robin, so slow spells of a shared machine hit all of them; each
ratio is the median over rounds of (variant / dropout) in the same round. Peak memory is the
largest total of live tensors allocated during one forward + backward (torch.profiler), and
is printed beside the batch x out x in float32 tensor that a naive per-example layer makes.

    python scripts/bench_dropconnect.py [--repeats 15] [--threads 2] [--p 0.5 0.2]
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from dropbench.models.mlp import MLP
from dropbench.regularizers import Dropout, dropconnect
from dropbench.regularizers.dropconnect import DropConnectLinear

Step = Callable[[], None]


def layer_steps(n_in: int, n_out: int, batch: int, p: float) -> dict[str, Step]:
    """One forward + backward of each layer variant, with the same weights and input."""
    x = torch.randn(batch, n_in, requires_grad=n_in != 784)  # the image layer needs no input gradient
    linear, drop = nn.Linear(n_in, n_out), Dropout(p)
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"dropout": lambda v: drop(linear(v))}
    for mask in ("batch", "example"):
        layer = DropConnectLinear(n_in, n_out, p=p, mask=mask)
        layer.load_state_dict(linear.state_dict())
        variants[f"dropconnect {mask}"] = layer

    def step(forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        forward(x).sum().backward()

    steps = {name: functools.partial(step, forward) for name, forward in variants.items()}
    steps["dropconnect example, eager path"] = eager(steps["dropconnect example"])
    return steps


def eager(step: Step) -> Step:
    """``step`` with the per-example layer's fused kernels switched off."""

    def run() -> None:
        fused_min = dropconnect.FUSED_MIN_ENTRIES
        dropconnect.FUSED_MIN_ENTRIES = 1 << 62
        try:
            step()
        finally:
            dropconnect.FUSED_MIN_ENTRIES = fused_min

    return run


def mlp_steps(batch: int, p: float) -> dict[str, Step]:
    """One Adam training step of the 784-800-800-10 MLP per regularizer, on random data."""
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    models = {"dropout": MLP((1, 28, 28), 10, drop=functools.partial(Dropout, p=p))}
    for mask in ("batch", "example"):
        linear = functools.partial(DropConnectLinear, p=p, mask=mask, activation=torch.relu)
        models[f"dropconnect {mask}"] = MLP((1, 28, 28), 10, linear=linear)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return {
        name: functools.partial(step, model.train(), torch.optim.Adam(model.parameters(), lr=1e-3))
        for name, model in models.items()
    }


def time_round_robin(steps: dict[str, Step], repeats: int) -> dict[str, list[float]]:
    """Seconds per step of every variant, ``repeats`` rounds after one warm-up round."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(repeats + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if repeat:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def peak_bytes(step: Step) -> int:
    """Largest total of live bytes allocated by ``step`` since it began (CPU allocator events)."""
    step()  # warm-up: lazily made state (gradients) exists before the measured run
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    for event in sorted(prof.profiler.kineto_results.events(), key=lambda e: e.start_ns()):
        if event.name() == "[memory]":
            live += event.nbytes()
            peak = max(peak, live)
    return peak


def table(title: str, seconds: dict[str, list[float]], memory: dict[str, int] | None = None) -> list[str]:
    base = seconds["dropout"]
    lines = [f"### {title}", "", "| variant | median ms | min ms | x dropout (median of rounds) |"]
    if memory:
        lines[-1] += " peak live MiB |"
    lines.append("|---|---|---|---|" + ("---|" if memory else ""))
    for name, times in seconds.items():
        ratio = statistics.median(t / b for t, b in zip(times, base, strict=True))
        line = f"| {name} | {1e3 * statistics.median(times):.2f} | {1e3 * min(times):.2f} | {ratio:.2f} |"
        lines.append(line + (f" {memory[name] / 2**20:.1f} |" if memory else ""))
    return lines + [""]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="measured rounds (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--p", type=float, nargs="+", default=[0.5, 0.2], help="drop probabilities")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lines = [
        f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"batch {args.batch_size}, {args.repeats} rounds after a warm-up.",
        "",
    ]
    for p in args.p:
        for n_in, n_out in [(784, 800), (800, 800)]:
            steps = layer_steps(n_in, n_out, args.batch_size, p)
            memory = {name: peak_bytes(step) for name, step in steps.items()}
            naive = args.batch_size * n_in * n_out * 4 / 2**20
            title = (
                f"Layer {n_in}->{n_out}, p={p}, forward + backward (naive per-example mask: {naive:.0f} MiB)"
            )
            lines += table(title, time_round_robin(steps, args.repeats), memory)
        lines += table(
            f"MLP 784-800-800-10 training step, Adam, p={p}",
            time_round_robin(mlp_steps(args.batch_size, p), args.repeats),
        )
        print("\n".join(lines), flush=True)
        lines = []


if __name__ == "__main__":
    main()
