"""Timing, peak memory, and the interleaved rounds in which one group is measured.

A group (one model on one dataset) is built once: the data, one model per regularizer, the
bound and, where it applies, the DataLoader baseline. After a short warm-up of each (a few
steps: allocator, thread pool, torch.compile of DropConnect's kernels), every round times one
epoch of each regularizer in turn, then the bound, then the baseline epoch. Ratios are taken
within a round, so a slow spell of a shared machine slows both sides of a ratio and largely
cancels; the report gives their median over rounds.
"""

from __future__ import annotations

import dataclasses
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from benchkit.baseline import example_epoch, example_loader
from benchkit.bounds import Bound
from benchkit.grid import BATCH_SIZE, DROP_P, Built, Config, Group, build_config
from dropbench.data import DataSplits
from dropbench.train import train_epoch

WARMUP_STEPS = 3  # full batches per warm-up (plus the last, partial batch of an epoch)
MIB = 1 << 20
CLEAR_REFS = Path("/proc/self/clear_refs")


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a timer reads when the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn`` takes, CUDA work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def proc_status_kib(key: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class PeakMemory:
    """Peak memory over a stretch of code, in MiB: ``start()``, run it, ``stop()``.

    CPU: the process's resident-set high-water mark (VmHWM), reset to the current RSS first by
    writing 5 to /proc/self/clear_refs (Linux >= 4.0). The peak includes all that was resident
    already (Python, torch, the group's data and models); ``stop`` also returns the increase over
    the RSS at ``start``, what the stretch itself added at its peak. Where the reset is refused
    the lifetime peak (ru_maxrss) stands in, and ``method`` says so.
    CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors, not the allocator's cache).
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.before = device, 0.0
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated"
        elif self.reset():
            self.method = "VmHWM, reset per epoch"
        else:
            self.method = "ru_maxrss (process lifetime)"

    def reset(self) -> bool:
        try:
            CLEAR_REFS.write_text("5")
        except OSError:
            return False
        return True

    def current(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / MIB
        return proc_status_kib("VmRSS") / 1024

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.method.startswith("VmHWM"):
            self.reset()
        self.before = self.current()

    def stop(self) -> tuple[float, float]:
        """(peak, peak - memory at start)."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / MIB
        elif self.method.startswith("VmHWM"):
            peak = proc_status_kib("VmHWM") / 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak - self.before


@dataclass
class GroupResult:
    """Per-round measurements of one group; index r of every list is round r."""

    group: Group
    train_examples: int
    bound_kinds: list[str]
    epoch_s: dict[Config, list[float]] = field(default_factory=dict)
    peak_mib: dict[Config, list[float]] = field(default_factory=dict)
    increase_mib: dict[Config, list[float]] = field(default_factory=dict)
    bound_s: list[float] = field(default_factory=list)
    baseline_s: list[float] = field(default_factory=list)
    memory_method: str = ""

    def config(self, reg: str, mask: str | None = None, p: float = DROP_P) -> Config | None:
        """The group's configuration of ``reg`` (and mask, and p but for reg=none), if measured."""
        wanted = Config(self.group.model, self.group.dataset, reg, mask, DROP_P if reg == "none" else p)
        return wanted if wanted in self.epoch_s else None


def warm_up_data(data: DataSplits, batch: int) -> DataSplits:
    """A few full batches plus a last batch of the epoch's own remainder, so the warm-up sees
    (and compiles for) every batch shape a measured epoch has."""
    n = len(data.train_y)
    k = min(n, WARMUP_STEPS * batch + n % batch)
    return dataclasses.replace(data, train_x=data.train_x[:k], train_y=data.train_y[:k])


def dropbench_epoch(built: Built, data: DataSplits, generator: torch.Generator) -> None:
    train_epoch(replace(built.training, generator=generator), data, BATCH_SIZE)


@dataclass
class Prepared:
    """A group ready to time: its data, one built model per configuration, bound and baseline."""

    data: DataSplits
    built: dict[Config, Built]
    generators: dict[Config, torch.Generator]  # shuffling and augmentation, one per configuration
    bound: Bound
    baseline: tuple | None  # example_epoch's arguments, where the group has a baseline
    device: torch.device


def prepare(group: Group, repeats: int, device: torch.device) -> Prepared:
    """Build every configuration of ``group`` on one copy of the data, the bound and the baseline."""
    overrides = [*group.common, f"epochs={repeats + 2}"]  # the cosine schedule never reaches 0
    built, data = {}, None
    for config in group.configs:  # the configuration's own p last: it wins over the common one
        built[config], data = build_config([*overrides, *config.overrides()], data)
    # the bound's layers: reg=none's model, or (a group without it) the first one's, same shapes
    reference = built.get(Config(group.model, group.dataset, "none")) or next(iter(built.values()))
    bound = Bound(reference.model, data.shape, len(data.train_y), BATCH_SIZE, device)
    generators = {c: torch.Generator(device=device).manual_seed(0) for c in built}
    baseline = None
    if group.has_baseline:  # a model of its own, so the dropbench epochs' optimizer state is not shared
        dropout = Config(group.model, group.dataset, "dropout")
        b, _ = build_config([*overrides, *dropout.overrides()], data)
        loader = example_loader(b.cfg.dataset, data, BATCH_SIZE, device)
        baseline = (b.training.model, b.training.optimizer, b.training.scheduler, loader, device)
    return Prepared(data, built, generators, bound, baseline, device)


def warm_up(p: Prepared) -> None:
    """A few steps of everything that is timed."""
    warm = warm_up_data(p.data, BATCH_SIZE)
    for config, built in p.built.items():
        dropbench_epoch(built, warm, p.generators[config])
    p.bound.epoch(max_steps=WARMUP_STEPS)
    if p.baseline is not None:
        example_epoch(*p.baseline, max_steps=WARMUP_STEPS + 1)


def time_round(p: Prepared, memory: PeakMemory, result: GroupResult) -> None:
    """One epoch of every configuration in turn, then the bound, then the baseline epoch."""
    for config, built in p.built.items():
        memory.start()
        seconds = timed(partial(dropbench_epoch, built, p.data, p.generators[config]), p.device)
        peak, increase = memory.stop()
        result.epoch_s.setdefault(config, []).append(seconds)
        result.peak_mib.setdefault(config, []).append(peak)
        result.increase_mib.setdefault(config, []).append(increase)
    result.bound_s.append(timed(p.bound.epoch, p.device))
    if p.baseline is not None:
        result.baseline_s.append(timed(partial(example_epoch, *p.baseline), p.device))


def measure_group(group: Group, repeats: int, device: torch.device) -> GroupResult:
    """Build the group, warm it up, and time ``repeats`` interleaved rounds."""
    p = prepare(group, repeats, device)
    warm_up(p)
    memory = PeakMemory(device)
    result = GroupResult(group, len(p.data.train_y), p.bound.kinds, memory_method=memory.method)
    for round_ in range(repeats):
        time_round(p, memory, result)
        progress(group, round_, repeats, result)
    return result


def release_memory(device: torch.device) -> None:
    """Free what a finished group left (its data, models and loader), before the next one."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def progress(group: Group, round_: int, repeats: int, result: GroupResult) -> None:
    """One line per round on stderr: the times just measured."""
    times = [f"{c.label.split('/', 2)[2]} {t[-1]:.2f}" for c, t in result.epoch_s.items()]
    times.append(f"bound {result.bound_s[-1]:.2f}")
    if result.baseline_s:
        times.append(f"baseline {result.baseline_s[-1]:.2f}")
    print(f"bench: {group.label} round {round_ + 1}/{repeats}: {', '.join(times)} s", file=sys.stderr)
