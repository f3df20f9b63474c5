"""Per-example DropConnect at every p: one layer's step, and fresh ``dropbench run`` epochs.

Shared by ``scripts/bench.py`` (its layer rows and first-epoch extra),
``scripts/bench_dropconnect.py`` (the detailed layer and MLP-step tables) and
``scripts/epoch_ratio.py`` (fresh two-epoch runs at every p). The MLP-epoch rows at every p
are a group of :mod:`.grid`, measured like every other group (:mod:`.measure`).

Layer level: forward + backward of one layer variant (``nn.Linear``; ``nn.Linear`` then
inverted ``Dropout``; ``DropConnectLinear`` per batch and per example) on the same weights
and input, timed round-robin so that a slow spell of a shared machine hits all of them. Peak
memory is the largest total of live tensors allocated during one forward + backward
(torch.profiler's allocator events).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from dropbench.regularizers import Dropout
from dropbench.regularizers.dropconnect import DropConnectLinear

Step = Callable[[], None]
#: The drop probabilities of issue 15's per-p targets
P_VALUES = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
#: --quick: two of them (each p compiles its own keep-bits kernel)
QUICK_P_VALUES = (0.2, 0.5)
#: The layer of the layer-level rows: the 800-800 MLP's first, at its training batch
LAYER = (784, 800)
#: --quick: the quick MLP's first layer, whose kernels that run compiles anyway
QUICK_LAYER = (784, 64)
LAYER_BATCH = 128
#: Rounds of the layer-level timing (a step takes milliseconds; bench.py --quick: 2)
LAYER_REPEATS = 15


def variant_name(reg: str, p: float | None = None, mask: str | None = None, backend: str = "") -> str:
    """The key of a layer variant in :func:`layer_steps`: ``dense``, ``dropout 0.5``,
    ``batch auto 0.5``, ``example fused 0.5``, ``example eager 0.5``."""
    if reg == "none":
        return "dense"
    if reg == "dropout":
        return f"dropout {p}"
    return f"{mask} {backend} {p}"


def layer_steps(n_in: int, n_out: int, batch: int, ps, eager: bool = False) -> dict[str, Step]:
    """One forward + backward of each layer variant, with the same weights and input.

    Per example runs the fused backend (``--eager`` in bench_dropconnect adds the eager one at
    p = 0.5). The image layer (784 inputs) needs no input gradient; others do."""
    x = torch.randn(batch, n_in, requires_grad=n_in != 784)
    linear = nn.Linear(n_in, n_out)
    forwards: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {variant_name("none"): linear}
    for p in ps:
        forwards[variant_name("dropout", p)] = functools.partial(lambda drop, v: drop(linear(v)), Dropout(p))
        variants = [("batch", "auto"), ("example", "fused")] + [("example", "eager")] * (eager and p == 0.5)
        for mask, backend in variants:
            layer = DropConnectLinear(n_in, n_out, p=p, mask=mask, backend=backend)
            layer.load_state_dict(linear.state_dict())
            forwards[variant_name("dropconnect", p, mask, backend)] = layer
    return {name: functools.partial(_backward, forward, x) for name, forward in forwards.items()}


def _backward(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
    forward(x).sum().backward()


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


def ratio(seconds: dict[str, list[float]], name: str, reference: str) -> float:
    """Median over rounds of (variant / reference) in the same round."""
    return statistics.median(t / b for t, b in zip(seconds[name], seconds[reference], strict=True))


def ratio_of_mins(seconds: dict[str, list[float]], name: str, reference: str) -> float:
    """min / min: each variant's least disturbed round, robust where another process takes
    cores for whole scheduler slices (a 2-thread step then waits milliseconds on one thread)."""
    return min(seconds[name]) / min(seconds[reference])


@dataclass
class LayerResult:
    """The layer-level measurement: per variant, seconds per round and peak live bytes."""

    shape: tuple[int, int]
    batch: int
    ps: tuple[float, ...]
    seconds: dict[str, list[float]]
    peak: dict[str, int]


def measure_layer(ps, repeats: int, shape: tuple[int, int] = LAYER, batch: int = LAYER_BATCH) -> LayerResult:
    """Every variant of one layer at every p: round-robin times, then each one's peak memory."""
    steps = layer_steps(*shape, batch, ps)
    seconds = time_round_robin(steps, repeats)
    return LayerResult(shape, batch, tuple(ps), seconds, {name: peak_bytes(s) for name, s in steps.items()})


def naive_mask_mib(shape: tuple[int, int], batch: int) -> float:
    """The batch x out x in float32 tensor a naive per-example layer would store."""
    return batch * shape[0] * shape[1] * 4 / 2**20


@dataclass
class FreshRun:
    """One ``dropbench run`` in a new process: its wall time and its epochs' training time."""

    wall_s: float
    epoch_s: list[float]  # ``epoch_time_s`` of each epoch, from the run's metrics.json


def fresh_run(overrides: list[str], results: Path, env: dict[str, str] | None = None) -> FreshRun:
    """``dropbench run OVERRIDES`` into the new folder ``results``, timed from the spawn."""
    command = [sys.executable, "-m", "dropbench", "run", *overrides, f"results_dir={results}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env or dict(os.environ))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    (path,) = results.rglob("metrics.json")
    return FreshRun(wall, [row["epoch_time_s"] for row in json.loads(path.read_text())["history"]])
