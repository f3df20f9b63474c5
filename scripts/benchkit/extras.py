"""Measurements around the training loop: start-up latency, a fresh run's first epoch, and
sweeps serial vs. parallel.

Start-up: ``dropbench run`` is spawned with the dataset cache already warm, and two moments
are read from its output, both counted from just before the spawn: the log line
``training: ...`` (``Run.train``, right before ``fit``) and the end of the first optimizer step.
The second comes from a global optimizer step hook (``torch.optim.optimizer.
register_optimizer_step_post_hook``) that a two-line wrapper installs before calling dropbench's
own ``main``: no product code is involved. The child is stopped after its first step.

First epoch: fresh one-epoch runs of ``reg=dropout`` and ``reg=dropconnect`` (per example) at
one p, interleaved, each timed by itself (``epoch_time_s``: the first epoch pays for loading
DropConnect's compiled kernels) and by the wall clock from spawn to exit.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchkit.dropconnect import FreshRun, fresh_run

MARK = "BENCH_FIRST_STEP"
TRAINING_LINE = "training: "
CHILD_TIMEOUT_S = 300
#: ``python -c PROBE run OVERRIDES`` is ``dropbench run OVERRIDES`` that also prints the wall
#: clock at the end of the first optimizer step
PROBE = f"""
import sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook
def first_step(*_):
    print("{MARK}", time.time(), flush=True)
    hook.remove()
hook = register_optimizer_step_post_hook(first_step)
from dropbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def spawn_until_first_step(overrides: list[str]) -> tuple[float, float]:
    """(seconds to the ``training:`` line, seconds to the end of the first step) of one spawn."""
    lines: list[str] = []
    log_s = step_s = None
    start = time.time()
    child = subprocess.Popen(
        [sys.executable, "-c", PROBE, "run", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(CHILD_TIMEOUT_S, child.kill)
    watchdog.start()
    try:
        for line in child.stdout:
            lines.append(line)
            if log_s is None and TRAINING_LINE in line:
                log_s = time.time() - start
            if line.startswith(MARK):
                step_s = float(line.split()[1]) - start
                break
    finally:
        child.terminate()  # dropbench treats SIGTERM as Ctrl-C: it notes the interrupted run and exits
        try:
            child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # seen once, on a cold first start in CI (not reproduced in 12 timed SIGTERMs since):
            # the timings are taken already, so a slow exit must not fail the measurement
            print("bench: the spawned run did not exit within 60 s of SIGTERM; killed it", file=sys.stderr)
            child.kill()
            child.communicate()
        watchdog.cancel()
    if step_s is None or log_s is None:
        raise RuntimeError("dropbench run never reached its first step:\n" + "".join(lines[-30:]))
    return log_s, step_s


@dataclass
class FirstStep:
    log_line_s: list[float]
    first_step_s: list[float]
    overrides: list[str]
    import_floor_s: list[float]  # a bare ``import torch, torch._dynamo``: the part no dropbench code can cut


def import_floor() -> float:
    """Seconds a fresh interpreter needs to import torch and torch._dynamo.

    torch.optim imports torch._dynamo the first time an optimizer is built (its methods are
    wrapped by ``torch._disable_dynamo``), so every training run pays for both imports.
    """
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torch._dynamo"], check=True)
    return time.perf_counter() - start


def first_step(overrides: list[str], repeats: int) -> FirstStep:
    """Spawn ``dropbench run`` ``repeats`` times, each into a fresh results folder."""
    timings = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="dropbench-bench-") as results:
            timings.append(spawn_until_first_step([*overrides, f"results_dir={results}"]))
    floors = [import_floor() for _ in range(repeats)]
    return FirstStep([t[0] for t in timings], [t[1] for t in timings], overrides, floors)


@dataclass
class FirstEpoch:
    """Interleaved fresh runs: index i of both lists is pair i."""

    overrides: list[str]
    dropout: list[FreshRun]
    dropconnect: list[FreshRun]

    def ratios(self, what: str) -> list[float]:
        """DropConnect / dropout per pair, of ``"epoch"`` (the first epoch) or ``"wall"``."""

        def value(run: FreshRun) -> float:
            return run.epoch_s[0] if what == "epoch" else run.wall_s

        return [value(c) / value(d) for c, d in zip(self.dropconnect, self.dropout, strict=True)]


def first_epoch(overrides: list[str], repeats: int) -> FirstEpoch:
    """``repeats`` pairs of fresh one-epoch runs, reg=dropout then reg=dropconnect, with
    ``overrides`` (which set p)."""
    runs: dict[str, list[FreshRun]] = {"dropout": [], "dropconnect": []}
    with tempfile.TemporaryDirectory(prefix="dropbench-bench-") as results:
        for repeat in range(repeats):
            for reg, done in runs.items():
                done.append(
                    fresh_run([f"reg={reg}", *overrides, "epochs=1"], Path(results) / f"{reg}{repeat}")
                )
    return FirstEpoch(overrides, runs["dropout"], runs["dropconnect"])


@dataclass
class SweepTiming:
    runs: int
    serial_s: float
    parallel_s: float
    n_jobs: int
    overrides: list[str]


def timed_sweep(overrides: list[str]) -> float:
    """Wall seconds of ``dropbench run -m OVERRIDES`` into a fresh results folder."""
    with tempfile.TemporaryDirectory(prefix="dropbench-bench-") as results:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "dropbench", "run", "-m", *overrides, f"results_dir={results}"],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S * 4,
        )
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sweep {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    return seconds


def sweep(overrides: list[str], runs: int, n_jobs: int = 2) -> SweepTiming:
    """The same sweep with Hydra's basic launcher (one process, runs in turn, torch's default
    threads) and with the joblib launcher (``n_jobs`` processes; dropbench gives each
    cores / n_jobs threads)."""
    serial = timed_sweep(overrides)
    parallel = timed_sweep([*overrides, "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"])
    return SweepTiming(runs, serial, parallel, n_jobs, overrides)
