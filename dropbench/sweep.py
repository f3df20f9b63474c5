"""A sweep's progress and its summary: ``run 3 of 8`` as each run starts, and at the end the
count of each outcome, the slowest run and the report command to run next.

A Hydra callback (``hydra.callbacks`` in ``configs/config.yaml``), so that it works under every
launcher: a job's callbacks run in the process that runs the job (a joblib or SLURM worker),
the sweep's in the command's own. Jobs tell the command their outcome through a ledger, one
JSON line per job appended to a file in the sweep folder, which the workers find through the
environment they inherit. A job's outcome is read from its run folder (:mod:`dropbench.rundir`),
not from what the task returns (a sweeper's objective), except for the jobs the task declined to
run, which it names with :func:`decline`: the folder of a refused job holds nothing, or another
run's record, and a busy one is another process's.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dropbench.resume import DONE_STATUSES
from dropbench.rundir import RunDir
from dropbench.stop import BUSY, COMMAND_PID, SweepStop

#: Set for the sweep's jobs: the ledger's path, how many jobs the sweep runs and the keys it
#: sweeps (when known: a grid's), which is what a job's progress line names
LEDGER = "DROPBENCH_SWEEP_LEDGER"
SIZE = "DROPBENCH_SWEEP_SIZE"
SWEPT = "DROPBENCH_SWEEP_KEYS"
#: Outcomes, in the order the summary counts them; refused and busy: see :func:`decline`
OUTCOMES = ("finished", "skipped", "resumed", "diverged", "refused", "busy", "failed")
#: Outcomes whose one-line reason the job printed (``dropbench: skip ...``)
EXPLAINED = ("refused", "busy", "failed")
#: Outcomes of a job that trained, among which the summary names the slowest
TRAINED = ("finished", "resumed", "diverged")

_declined: dict[str, str] = {}  # a job's folder -> refused or busy, said by the task in its process


def decline(run_dir: Path, why: str) -> None:
    """The task's word that it did not run this job: ``refused`` (settings it refuses, or another
    config's record in its folder) or ``busy`` (another process holds the folder's lock). The
    job's callbacks run in the task's process, so the ledger line then says so."""
    _declined[str(run_dir)] = why


def sweep_plan(config: DictConfig) -> tuple[int | None, list[str] | None]:
    """How many jobs the sweep will run and the keys it sweeps: a grid's (Hydra's own expansion
    of the sweeper's params and the command's overrides), or the number of trials; None for
    what another sweeper does not tell."""
    sweeper = config.hydra.sweeper
    if str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        parsed = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
        swept = sorted({o.get_key_element() for o in parsed if o.is_sweep_override()})
        return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None)), swept
    trials = sweeper.get("n_trials")
    return (int(trials) if isinstance(trials, int) else None), None


def progress_line(number: int, overrides: list[str]) -> str:
    """``run 3 of 8: p=0.5 seed=1``: a job's number, the sweep's size and the swept values."""
    of = f" of {os.environ[SIZE]}" if SIZE in os.environ else ""
    if SWEPT in os.environ:
        swept = json.loads(os.environ[SWEPT])
        overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    shown = f": {' '.join(overrides)}" if overrides else ""
    return f"dropbench: run {number}{of}{shown}"


def outcome(run_dir: RunDir, started: float, had_checkpoint: bool) -> str:
    """What a job did, from its folder: a record written since it ``started`` (a time.time()) is
    its own; an older one means it found the run done; none means it could not run."""
    try:
        record = json.loads(run_dir.metrics.read_text())
        finished = datetime.fromisoformat(record["finished_at"]).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return "failed"  # an error: its line above says which (a refused job is declined)
    if record.get("status") not in DONE_STATUSES:
        return "failed"
    if finished < started:
        return "skipped"
    if record["status"] == "diverged":
        return "diverged"
    return "resumed" if had_checkpoint else "finished"


def summary(entries: list[dict[str, Any]], sweep_dir: str) -> list[str]:
    """The lines that end a sweep: outcome counts, the slowest run, the report command."""
    counts = {name: sum(entry["outcome"] == name for entry in entries) for name in OUTCOMES}
    counted = ", ".join(f"{n} {name}" for name, n in counts.items())
    why = " (the 'dropbench: skip' lines above say why)" if any(counts[n] for n in EXPLAINED) else ""
    lines = [f"dropbench: sweep done: {len(entries)} runs: {counted}{why}"]
    trained = [entry for entry in entries if entry["outcome"] in TRAINED]
    if trained:
        slowest = max(trained, key=lambda entry: entry["seconds"])
        lines.append(f"dropbench: slowest run: {slowest['dir']} ({slowest['seconds']:.1f} s)")
    lines.append(f"dropbench: next: dropbench report {sweep_dir}")
    return lines


class SweepProgress(Callback):
    """Numbers each job of a sweep as it starts and sums the sweep up at its end."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[float, bool]] = {}  # a job's folder -> (start, had a checkpoint)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        ledger = sweep_dir / f".dropbench-sweep-{os.getpid()}.jsonl"  # one per command
        ledger.write_text("")
        atexit.register(ledger.unlink, missing_ok=True)  # also after a Ctrl-C ends the sweep
        os.environ[LEDGER] = str(ledger)  # before any worker starts, so that every one inherits it
        size, swept = sweep_plan(config)
        if size is not None:
            os.environ[SIZE] = str(size)
        if swept is not None:
            os.environ[SWEPT] = json.dumps(swept)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if LEDGER not in os.environ:
            return  # a single run, not a sweep's job
        run_dir = RunDir(Path(config.hydra.runtime.output_dir))
        self.started[str(run_dir.path)] = (time.time(), run_dir.checkpoint.is_file())
        overrides = OmegaConf.to_container(config.hydra.overrides.task)
        print(progress_line(config.hydra.job.num + 1, overrides), flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        ledger = os.environ.get(LEDGER)
        path = str(config.hydra.runtime.output_dir)
        if ledger is None or path not in self.started:
            return
        started, had_checkpoint = self.started.pop(path)
        entry = {
            "dir": path,
            "outcome": _declined.pop(path, None) or outcome(RunDir(Path(path)), started, had_checkpoint),
            "seconds": time.time() - started,
        }
        # one short line in append mode: concurrent workers' lines do not interleave
        with open(ledger, "a") as file:
            file.write(json.dumps(entry) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        ledger = os.environ.pop(LEDGER, None)
        for name in (SIZE, SWEPT):
            os.environ.pop(name, None)
        if ledger is None:
            return
        lines = Path(ledger).read_text().splitlines()
        Path(ledger).unlink(missing_ok=True)
        entries = [json.loads(line) for line in lines if line.strip()]
        print("\n".join(summary(entries, str(config.hydra.sweep.dir))), flush=True)


class StopWorkers(Callback):
    """Makes a stop sent to a sweep's command stop the launcher's workers too, each recording
    its run as interrupted (:class:`dropbench.stop.SweepStop`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        busy = Path(config.hydra.sweep.dir) / f".dropbench-busy-{os.getpid()}"  # one per command
        busy.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, busy, ignore_errors=True)  # also after a stop ends the sweep
        os.environ[COMMAND_PID] = str(os.getpid())  # before any worker starts: every one inherits them
        os.environ[BUSY] = str(busy)
        SweepStop(busy).install()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        busy = os.environ.pop(BUSY, None)
        os.environ.pop(COMMAND_PID, None)
        if busy is not None:
            shutil.rmtree(busy, ignore_errors=True)
