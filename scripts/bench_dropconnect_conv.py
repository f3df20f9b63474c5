"""What does DropConnect on conv kernels cost next to plain conv layers, on the CPU?

The CNN of ``configs/model/cnn.yaml`` (conv 3->32 and 32->64, 3x3, each with ReLU and 2x2
max-pool, then 4096->256->10) on random 3x32x32 images, batch 128: one training step
(forward, cross-entropy, backward, Adam step) with plain conv layers (``nn.Conv2d``), with
``DropConnectConv2d`` per batch and per example (at each chunk size), and the same for the
two conv layers alone (forward + backward, the first without an input gradient, as in
training). The head is plain in every variant, so the differences are the conv layers'.

All variants run round-robin, so slow spells of a shared machine hit all of them; each ratio
is the median over rounds of (variant / plain) in the same round, min/min the ratio of each
variant's least disturbed round. Peak memory is the largest total of live tensors allocated
during one step (torch.profiler's allocator events), and the extra memory its excess over the
plain model's; the per-layer account beside it is what the per-example path itself holds.

    python scripts/bench_dropconnect_conv.py [--repeats 10] [--threads 1] [--out results/dropconnect_conv.md]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dropconnect import cpu_name, peak_bytes, ratio, ratio_of_mins, time_round_robin  # noqa: E402

from dropbench.models import CNN  # noqa: E402
from dropbench.regularizers import DropConnectConv2d  # noqa: E402

Step = Callable[[], None]
CHANNELS = (32, 64)
MiB = 2**20


def variants(p: float, chunks: tuple[int, ...]) -> dict[str, Callable[..., nn.Module] | None]:
    """The DropConnect conv factory of each variant (beside plain nn.Conv2d, channels-last and NCHW)."""
    found: dict[str, Callable[..., nn.Module] | None] = {}
    found[f"batch p={p}"] = functools.partial(DropConnectConv2d, p=p, mask="batch")
    for chunk in chunks:
        found[f"example p={p} chunk {chunk}"] = functools.partial(DropConnectConv2d, p=p, chunk=chunk)
    return found


class ContiguousCNN(CNN):
    """The CNN in NCHW (the per-example path's own layout), for the memory it then takes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.to(memory_format=torch.contiguous_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.input_drop(x)))


def model_steps(batch: int, factories) -> dict[str, Step]:
    """One Adam training step of the CNN per variant, the same weights and data for all."""
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    torch.manual_seed(0)
    reference = CNN((3, 32, 32), 10, channels=CHANNELS).state_dict()
    steps = {}
    for name, conv in {"plain": None, "plain NCHW": None, **factories}.items():
        kind = ContiguousCNN if name == "plain NCHW" else CNN
        model = kind((3, 32, 32), 10, channels=CHANNELS, conv=conv)
        model.load_state_dict(reference)
        steps[name] = functools.partial(
            _train_step, model.train(), torch.optim.Adam(model.parameters()), x, y
        )
    return steps


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def conv_steps(batch: int, factories) -> dict[str, Step]:
    """Forward + backward of the CNN's two conv layers alone, each input in the layout the CNN
    gives it: channels-last images; the first layer's output, channels-last from nn.Conv2d and
    the per-batch path, NCHW from the per-example path (and everywhere in the NCHW variant)."""
    images = torch.randn(batch, 3, 32, 32)
    hidden = torch.randn(batch, CHANNELS[0], 16, 16)
    last = torch.channels_last
    batched = [name for name in factories if name.startswith("batch")]
    steps = {}
    for name, conv in {"plain": None, "plain NCHW": None, **factories}.items():
        torch.manual_seed(0)
        make = conv or nn.Conv2d
        layers = [make(3, CHANNELS[0], 3, padding=1), make(*CHANNELS, 3, padding=1)]
        nchw = name == "plain NCHW"
        for layer in layers:
            layer.to(memory_format=torch.contiguous_format if nchw else last)
        x1 = images if nchw else images.contiguous(memory_format=last)
        x2 = hidden.contiguous(memory_format=last) if name in ("plain", *batched) else hidden.clone()
        steps[name] = functools.partial(_conv_backward, layers, x1, x2.requires_grad_())
    return steps


def _conv_backward(layers, x1, x2) -> None:
    (layers[0](x1).sum() + layers[1](x2).sum()).backward()


def account(batch: int, chunks: list[int]) -> list[str]:
    """Per conv layer of the CNN: the packed keep bits the backward pass keeps, and one chunk's
    int32 masks and float32 kernels (the buffers the per-example path reuses chunk to chunk)."""
    head = "| layer | keep bits MiB (kept for backward) | one chunk's masks + kernels MiB, chunk "
    lines = [head + " / ".join(map(str, chunks)) + " |", "|---|---|---|"]
    for c_in, c_out in [(3, CHANNELS[0]), CHANNELS]:
        size = c_out * c_in * 9
        bits = -(-batch // 32) * (size + c_out) * 4
        per_chunk = " / ".join(f"{chunk * ((size + c_out) * 4 + size * 4) / MiB:.2f}" for chunk in chunks)
        lines.append(f"| {c_in}->{c_out} | {bits / MiB:.2f} | {per_chunk} |")
    return lines + [""]


def table(title: str, seconds, memory=None) -> list[str]:
    head = "| variant | median ms | / plain | min / min |" + (" peak MiB | extra MiB |" if memory else "")
    lines = [f"### {title}", "", head, "|---" * (6 if memory else 4) + "|"]
    for name in seconds:
        cells = [name, f"{1e3 * statistics.median(seconds[name]):.1f}"]
        cells += [f"{ratio(seconds, name, 'plain'):.2f}", f"{ratio_of_mins(seconds, name, 'plain'):.2f}"]
        if memory:
            cells += [f"{memory[name] / MiB:.1f}", f"{(memory[name] - memory['plain']) / MiB:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="measured rounds (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--p", type=float, default=0.5, help="drop probability of the kernels")
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32], help="examples per group")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    factories = variants(args.p, tuple(args.chunks))
    lines = [
        f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"batch {args.batch_size}, {args.repeats} rounds after a warm-up.",
        "",
    ]
    steps = model_steps(args.batch_size, factories)
    memory = {name: peak_bytes(step) for name, step in steps.items()}
    title = f"CNN {CHANNELS} -> 256 -> 10 training step, 3x32x32, Adam"
    lines += table(title, time_round_robin(steps, args.repeats), memory)
    print("\n".join(lines), flush=True)
    conv_seconds = time_round_robin(conv_steps(args.batch_size, factories), args.repeats)
    conv_memory = {name: peak_bytes(step) for name, step in conv_steps(args.batch_size, factories).items()}
    lines += table("The two conv layers alone, forward + backward", conv_seconds, conv_memory)
    lines += [f"### What the per-example path holds, per conv layer (batch {args.batch_size})", ""]
    lines += account(args.batch_size, args.chunks)
    print("\n".join(lines[-20:]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
