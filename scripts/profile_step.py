"""Why the CPU targets of the speed issue are missed: the training step taken apart.

For the MLP on MNIST and the CNN on CIFAR-10 (the bench's target groups, built exactly as
``scripts/bench.py`` builds them: Adam fused, cosine schedule, batch 128, p = 0.5), one
process times, in interleaved rounds (the median of each part's time per step over rounds):

- ``bound``: the step's bare GEMMs and convolutions (``benchkit.bounds``, the bench's bound);
- ``fwd+bwd none``: reg=none's forward, loss and backward, no optimizer;
- ``step none`` and ``step dropout``: a whole training step (zero_grad, forward, loss, backward,
  Adam, schedule), as ``dropbench.train.train_epoch`` takes it;
- ``optimizer``: ``optimizer.step()`` + the schedule alone, on the gradients of one step;
- ``batches``: drawing the shuffled batches of an epoch, per step.

From these it writes the epoch / bound ratio as a sum of parts (bound 1, plus what autograd,
activations, biases and loss add, plus the optimizer, plus the dropout masks), and the top
operators of the dropout step by self CPU time (``torch.profiler``), with the number of
operators a step runs. Then the start-up: a fresh ``dropbench run``'s phases, each timed in the
child from just before the spawn (imports, Hydra's compose, the checks, the cached data, the
build, the first step). Writes Markdown.

    DROPBENCH_DATA=../shared/data python scripts/profile_step.py --out results/profile_step.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from benchkit.bounds import Bound
from benchkit.grid import BATCH_SIZE, Config, build_config, common_overrides
from benchkit.machine import device_name
from torch.profiler import ProfilerActivity, profile

from dropbench.data.tensors import iterate_batches
from dropbench.train import forward_loss

GROUPS = {"mlp/mnist": ("mlp", "mnist", None), "cnn/cifar10": ("cnn", "cifar10", 10_000)}
TARGETS = {"mlp/mnist": 1.3, "cnn/cifar10": 1.5}  # the epoch / bound limits


def per_step(fn, steps: int) -> float:
    """Milliseconds per call of ``fn`` over ``steps`` calls."""
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return 1e3 * (time.perf_counter() - start) / steps


def parts(model: str, dataset: str, train_size: int | None, steps: int, rounds: int) -> dict:
    overrides = [*common_overrides(model, train_size, False, "cpu"), "epochs=100"]
    none, data = build_config([*overrides, *Config(model, dataset, "none").overrides()])
    dropout, _ = build_config([*overrides, *Config(model, dataset, "dropout").overrides()], data)
    bound = Bound(none.model, data.shape, len(data.train_y), BATCH_SIZE, torch.device("cpu"))
    x, y = data.train_x[:BATCH_SIZE], data.train_y[:BATCH_SIZE]
    generator = torch.Generator().manual_seed(0)

    def step(built) -> None:
        t = built.training
        t.model.train()
        loss, _ = forward_loss(t.model, t.task, x, y)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()
        t.scheduler.step()

    def forward_backward() -> None:
        loss, _ = forward_loss(none.model, none.training.task, x, y)
        none.training.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def optimizer_only() -> None:
        none.training.optimizer.step()
        none.training.scheduler.step()

    def batches() -> None:
        for _ in iterate_batches(data.train_x, data.train_y, BATCH_SIZE, generator, data.augment):
            pass

    epoch_steps = -(-len(data.train_y) // BATCH_SIZE)
    timers = {
        "bound": lambda: per_step(lambda: [op() for op in bound.full_ops], steps),
        "fwd+bwd none": lambda: per_step(forward_backward, steps),
        "optimizer": lambda: (forward_backward(), per_step(optimizer_only, steps))[1],
        "step none": lambda: per_step(lambda: step(none), steps),
        "step dropout": lambda: per_step(lambda: step(dropout), steps),
        "batches": lambda: per_step(batches, 1) / epoch_steps,
    }
    for timer in timers.values():
        timer()  # warm-up: allocator, thread pool
    times = defaultdict(list)
    for index in range(rounds):  # every other round in reverse order: no part always follows another
        order = list(timers) if index % 2 == 0 else list(reversed(timers))
        for name in order:
            times[name].append(timers[name]())
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"ms": medians, "ops": top_ops(lambda: step(dropout), steps)}


def top_ops(step, steps: int, top: int = 12) -> dict:
    """Self CPU time per step of the dropout step's operators (the profiler's overhead included)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    total_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "total_ms": total_ms,
        "ops_per_step": sum(e.count for e in events) / steps,
        "rows": [(e.key, e.self_cpu_time_total / 1e3 / steps, e.count / steps) for e in rows],
    }


STARTUP_CHILD = r"""
import json, sys, time
marks = {}
def mark(name): marks[name] = time.time()
import torch, torch._dynamo
mark("import torch, torch._dynamo")
from dropbench.build import build_training, check_config, compose_config, load_data
from dropbench.train import forward_loss
mark("import dropbench (Hydra, OmegaConf, models)")
cfg = compose_config(sys.argv[1:])
mark("compose the config (Hydra)")
choices = dict(a.split("=", 1) for a in sys.argv[1:4]) | {"optimizer": "adam", "schedule": "cosine"}
knobs = check_config(cfg, choices)
mark("check the config (incl. the meta build)")
data = load_data(cfg, knobs)
mark("load the cached data")
training = build_training(cfg, knobs, data)
mark("build model, optimizer, schedule")
x, y = data.train_x[:128], data.train_y[:128]
loss, _ = forward_loss(training.model, training.task, x, y)
loss.backward(); training.optimizer.step()
mark("first training step")
print(json.dumps(marks))
"""


def startup(spawns: int) -> list[tuple[str, float]]:
    """The phases of a fresh process up to its first step: seconds from just before the spawn
    to the end of each phase, median over ``spawns`` (the data cache warm)."""
    args = ["model=mlp", "dataset=mnist", "reg=dropout", *common_overrides("mlp", None, False, "cpu")]
    runs = []
    for _ in range(spawns):
        start = time.time()
        out = subprocess.run([sys.executable, "-c", STARTUP_CHILD, *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        marks = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append({name: at - start for name, at in marks.items()})
    return [(name, statistics.median(r[name] for r in runs)) for name in runs[0]]


def group_text(label: str, result: dict) -> str:
    ms, ops = result["ms"], result["ops"]
    bound, step_dropout = ms["bound"], ms["step dropout"] + ms["batches"]
    overhead = ms["fwd+bwd none"] - bound
    rest = ms["step none"] - ms["fwd+bwd none"] - ms["optimizer"]
    dropout = ms["step dropout"] - ms["step none"]
    rows = [
        ("the bare GEMMs/convolutions (the bound)", bound),
        ("autograd, activations, biases, pooling, loss (fwd+bwd none − bound)", overhead),
        ("optimizer: fused Adam + schedule", ms["optimizer"]),
        ("the step beyond its parts timed alone: model.train(), their effect on each other's caches", rest),
        ("dropout masks and their products (step dropout − step none)", dropout),
        ("drawing the shuffled batch (an epoch's, per step)", ms["batches"]),
    ]
    lines = [
        f"### {label}\n",
        "| part of one training step | ms per step | × bound |",
        "|---|---|---|",
        *(f"| {name} | {value:.3f} | {value / bound:.2f} |" for name, value in rows),
        f"| **the dropout step, batch included** | **{step_dropout:.3f}** | **{step_dropout / bound:.2f}** |",
        "",
        f"The limit is {TARGETS[label]} × bound = {TARGETS[label] * bound:.3f} ms: the parts other than "
        f"the bound may take {(TARGETS[label] - 1) * bound:.3f} ms, and take "
        f"{step_dropout - bound:.3f} ms. Each part is timed alone, so the parts need not add up to the "
        "step exactly (the row of the step beyond its parts takes the difference, and may be negative). "
        f"The DataLoader target (speed-up ≥ 0.8 × its ceiling) is the "
        f"same limit in other words: speed-up = ceiling × bound / epoch, so it needs epoch / bound "
        f"≤ 1.25.",
        "",
        f"Top operators of the dropout step by self CPU time (torch.profiler; {ops['ops_per_step']:.0f} "
        f"operator calls per step, {ops['total_ms']:.3f} ms per step under the profiler):",
        "",
        "| operator | self ms per step | calls per step |",
        "|---|---|---|",
        *(f"| `{name}` | {value:.3f} | {count:g} |" for name, value, count in ops["rows"]),
        "",
    ]
    return "\n".join(lines)


def startup_text(phases: list[tuple[str, float]]) -> str:
    lines = ["| phase | done after (s) | phase (s) |", "|---|---|---|"]
    before = 0.0
    for name, at in phases:
        lines.append(f"| {name} | {at:.2f} | {at - before:.2f} |")
        before = at
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed part and round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--spawns", type=int, default=3)
    parser.add_argument("--only", default=",".join(GROUPS), help="groups, comma-separated")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # the bench's threads
    sections = [group_text(g, parts(*GROUPS[g], args.steps, args.rounds)) for g in args.only.split(",")]
    phases = startup(args.spawns)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cpu = device_name(torch.device("cpu"))
    text = (
        "# The training step taken apart: why the CPU targets are missed\n\n"
        f"Made by `python scripts/profile_step.py` on {stamp}. Device: cpu ({cpu}), "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; {args.rounds} interleaved "
        f"rounds of {args.steps} steps per part, medians. One batch of 128 repeated (no shuffling "
        "inside the parts).\n\n"
        "## The step\n\n" + "\n".join(sections) + "\n## Start-up: a fresh process to its first step\n\n"
        f"Median over {args.spawns} spawns, the data cache warm; times from just before the spawn.\n\n"
        + startup_text(phases)
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
