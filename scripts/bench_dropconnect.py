"""How much does DropConnect cost next to a dense layer and Dropout, on the CPU, at every p?

Layer level: forward + backward of one layer (784->800 without and 800->800 with an input
gradient, batch 128) for every p: ``nn.Linear`` (dense), ``nn.Linear`` then inverted
``Dropout`` (dropout), ``DropConnectLinear(mask="batch")`` and ``mask="example"`` (fused
backend; ``--eager`` adds the eager backend at p = 0.5). Model level: one Adam step of the
784-800-800-10 MLP (random data) with Dropout vs DropConnect per example, every p; and the
evaluation forward (batch 1024) with mean vs Gaussian (closed-form) inference.

All variants of a table run round-robin, so slow spells of a shared machine hit all of them;
each ratio is the median over rounds of (variant / reference) in the same round. Peak memory
is the largest total of live tensors allocated during one forward + backward (torch.profiler),
beside the batch x out x in float32 tensor that a naive per-example layer would make. The
layer-level code is ``benchkit.dropconnect``'s, which ``scripts/bench.py`` runs for its layer rows.

    python scripts/bench_dropconnect.py [--repeats 15] [--threads 2] [--out results/dropconnect_layer.md]

On a host shared with other busy processes, run it with ``OMP_WAIT_POLICY=PASSIVE``: by
default OpenMP's idle workers spin, and with fewer free cores than threads the spinning
workers and the descheduled ones make each fused kernel wait (3x slower epochs measured).
"""

from __future__ import annotations

import argparse
import functools
import statistics

import torch
import torch.nn.functional as F
from benchkit.dropconnect import (
    P_VALUES,
    Step,
    layer_steps,
    naive_mask_mib,
    peak_bytes,
    ratio,
    ratio_of_mins,
    time_round_robin,
)
from benchkit.machine import cpu_name
from torch import nn

from dropbench.models.mlp import MLP
from dropbench.regularizers import Dropout
from dropbench.regularizers.dropconnect import DropConnectLinear


def mlp_steps(batch: int, ps) -> dict[str, Step]:
    """One Adam training step of the 784-800-800-10 MLP per regularizer and p, on random data."""
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    models = {}
    for p in ps:
        models[f"dropout {p}"] = MLP((1, 28, 28), 10, drop=functools.partial(Dropout, p=p))
        linear = functools.partial(DropConnectLinear, p=p, mask="example", activation=torch.relu)
        models[f"example fused {p}"] = MLP((1, 28, 28), 10, linear=linear)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return {
        name: functools.partial(step, model.train(), torch.optim.Adam(model.parameters(), lr=1e-3))
        for name, model in models.items()
    }


def eval_steps(batch: int, p: float) -> dict[str, Step]:
    """The MLP's evaluation forward with mean and with closed-form Gaussian inference."""
    x = torch.randn(batch, 1, 28, 28)
    steps = {}
    for inference in ("mean", "gaussian"):
        linear = functools.partial(DropConnectLinear, p=p, inference=inference, activation=torch.relu)
        model = MLP((1, 28, 28), 10, linear=linear).eval()
        steps[inference] = functools.partial(torch.no_grad()(model), x)
    return steps


def ms(times: list[float]) -> str:
    return f"{1e3 * statistics.median(times):.2f}"


def layer_table(title: str, seconds, memory, ps) -> list[str]:
    head = "| p | dense ms | dropout ms | batch ms | example ms | example / dense | example / dropout |"
    head += " same, min / min | example peak MiB |"
    lines = [f"### {title}", "", head, "|---" * 9 + "|"]
    for p in ps:
        name = f"example fused {p}"
        cells = [str(p), ms(seconds["dense"]), ms(seconds[f"dropout {p}"]), ms(seconds[f"batch auto {p}"])]
        cells += [ms(seconds[name]), f"{ratio(seconds, name, 'dense'):.2f}"]
        cells += [
            f"{ratio(seconds, name, f'dropout {p}'):.2f}",
            f"{ratio_of_mins(seconds, name, f'dropout {p}'):.2f}",
        ]
        cells.append(f"{memory[name] / 2**20:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    if "example eager 0.5" in seconds:
        eager = ratio(seconds, "example eager 0.5", "dense")
        lines += ["", f"Eager backend at p=0.5: {ms(seconds['example eager 0.5'])} ms, {eager:.1f}x dense."]
    return lines + [""]


def mlp_table(seconds, ps) -> list[str]:
    lines = ["### MLP 784-800-800-10 training step, Adam, batch 128", ""]
    head = "| p | dropout ms | DropConnect per example ms | example / dropout | same, min / min |"
    lines += [head, "|---|---|---|---|---|"]
    for p in ps:
        name, dropout = f"example fused {p}", f"dropout {p}"
        cells = [str(p), ms(seconds[dropout]), ms(seconds[name]), f"{ratio(seconds, name, dropout):.2f}"]
        cells.append(f"{ratio_of_mins(seconds, name, dropout):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="measured rounds (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--p", type=float, nargs="+", default=list(P_VALUES), help="drop probabilities")
    parser.add_argument("--eager", action="store_true", help="also time the eager backend at p=0.5")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lines = [
        f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"batch {args.batch_size}, {args.repeats} rounds after a warm-up; median ms.",
        "",
    ]
    for n_in, n_out in [(784, 800), (800, 800)]:
        steps = layer_steps(n_in, n_out, args.batch_size, args.p, args.eager)
        memory = {name: peak_bytes(step) for name, step in steps.items() if name.startswith("example fused")}
        naive = naive_mask_mib((n_in, n_out), args.batch_size)
        title = f"Layer {n_in}->{n_out}, forward + backward (naive per-example mask: {naive:.0f} MiB)"
        lines += layer_table(title, time_round_robin(steps, args.repeats), memory, args.p)
        print("\n".join(lines), flush=True)
    lines += mlp_table(time_round_robin(mlp_steps(args.batch_size, args.p), args.repeats), args.p)
    evals = time_round_robin(eval_steps(1024, 0.5), args.repeats)
    lines += [
        "### MLP evaluation forward, batch 1024, p=0.5",
        "",
        f"Mean inference {ms(evals['mean'])} ms, closed-form Gaussian {ms(evals['gaussian'])} ms: "
        f"{ratio(evals, 'gaussian', 'mean'):.2f}x "
        f"(min / min: {ratio_of_mins(evals, 'gaussian', 'mean'):.2f}x).",
        "",
    ]
    print("\n".join(lines[-8:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines))


if __name__ == "__main__":
    main()
