"""Find run folders and read their ``metrics.json``: finished runs into one tidy DataFrame, the rest
into a list of problems with the reason. Only per-run files are read, never logs or TensorBoard."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dropbench.errors import DropbenchError
from dropbench.rundir import RunDir
from dropbench.schema import (
    GROUPS,
    RECORDED,
    Role,
    declared_defaults,
    keys,
    reg_settings,
    setup_settings,
    with_defaults,
)
from dropbench.tasks import Classification, recorded_task

STATUSES = ("finished", "diverged", "interrupted")
#: config keys every finished run must have (the identity settings); the others (optimizer, lr,
#: max_norm, ...) may be missing in older records and then read as None.
REQUIRED_CONFIG = tuple(key for key in RECORDED if key in keys(Role.IDENTITY))
SETUP_KEYS = tuple(key for key in RECORDED if key not in REQUIRED_CONFIG)


def headline(record: dict[str, Any]) -> str:
    """The task's headline metric (``acc``, ``mse``); records from before tasks are classifications."""
    return recorded_task(record).headline


def required_final(record: dict[str, Any]) -> tuple[str, ...]:
    return (f"train/{headline(record)}", f"test/{headline(record)}")


@dataclass(frozen=True)
class Run:
    """A finished run: its folder and the parsed ``metrics.json``."""

    folder: Path
    record: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Problem:
    """A run left out of the tables: ``status`` is unfinished, interrupted, diverged or corrupt."""

    folder: Path
    status: str
    reason: str


def find_run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` included) holding metrics.json, .hydra/ or checkpoint.pt."""
    found = []
    for folder, subfolders, files in os.walk(root):
        if RunDir.holds_run(set(files) | set(subfolders)):
            found.append(Path(folder))
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
    return sorted(found)


def missing_keys(record: dict[str, Any]) -> list[str]:
    """The keys a finished record needs and lacks, named ``section/key``."""
    config, final, best = (record.get(k) for k in ("config", "final", "best"))
    if not isinstance(config, dict) or not isinstance(final, dict) or not isinstance(best, dict):
        return [k for k in ("config", "final", "best") if not isinstance(record.get(k), dict)]
    needed = [
        ("config", config, REQUIRED_CONFIG),
        ("final", final, required_final(record)),
        ("best", best, (f"val/{headline(record)}",)),
    ]
    return [f"{name}/{key}" for name, section, keys in needed for key in keys if key not in section]


def read_run(folder: Path) -> Run | Problem:
    """The run in ``folder``, or the reason it cannot be tabulated."""
    path = RunDir(folder).metrics
    if not path.is_file():
        return Problem(folder, "unfinished", "no metrics.json: the run never finished")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Problem(folder, "corrupt", f"metrics.json unreadable: {error}")
    status = record.get("status") if isinstance(record, dict) else None
    if status not in STATUSES:
        return Problem(
            folder, "corrupt", f"metrics.json has status {status!r}, not one of {', '.join(STATUSES)}"
        )
    if status == "diverged":
        where = record.get("diverged") or {}
        return Problem(
            folder, status, f"{where.get('metric', 'loss')} not finite at epoch {where.get('epoch', '?')}"
        )
    if status == "interrupted":
        return Problem(folder, status, f"stopped after {len(record.get('history') or [])} epoch(s)")
    missing = missing_keys(record)
    if missing:
        return Problem(folder, "corrupt", f"metrics.json lacks {', '.join(missing)}")
    wrong = wrong_types(record)
    if wrong:
        return Problem(folder, "corrupt", f"metrics.json has {wrong}")
    return Run(folder, record)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def wrong_types(record: dict[str, Any]) -> str | None:
    """The first identity setting or metric of a finished record whose type is wrong, or None."""
    config = record["config"]
    checks = {
        "seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "p": lambda v: v is None or is_number(v),
    }
    for key in REQUIRED_CONFIG:
        valid = checks.get(key, lambda v: isinstance(v, str))
        if not valid(config[key]):
            return f"config/{key} = {config[key]!r}, not a {'number' if key in checks else 'name'}"
    for section in ("final", "best"):
        for key, value in record[section].items():
            if value is not None and not is_number(value):
                return f"{section}/{key} = {value!r}, not a number"
    return None


def scan(paths: list[Path]) -> tuple[list[Run], list[Problem]]:
    """Read every run under ``paths``; each path must exist and hold at least one finished run."""
    if not paths:
        raise DropbenchError("no PATH given; name folders that hold runs, e.g. results/")
    runs: dict[Path, Run] = {}
    problems: dict[Path, Problem] = {}
    for path in paths:
        if not path.exists():
            raise DropbenchError(f"{str(path)!r} does not exist")
        found = [read_run(folder) for folder in find_run_folders(path)]
        if not any(isinstance(item, Run) for item in found):
            raise DropbenchError(f"no finished run under {str(path)!r} ({describe(found)})")
        for item in found:  # a folder named twice (results/ and results/sweeps/) counts once
            (runs if isinstance(item, Run) else problems)[item.folder.resolve()] = item
    return list(runs.values()), list(problems.values())


def describe(found: list[Run | Problem]) -> str:
    """'no run folders' or a count per status, for the error message."""
    if not found:
        return "no folder with metrics.json, .hydra/ or checkpoint.pt"
    counts = pd.Series([item.status for item in found]).value_counts()
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def number(value: Any) -> float:
    """A metric as a float; null (a diverged value) and non-numbers become NaN."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


#: runs.csv's generalization gap: its unit in its name, since a gap of 0.02 (a fraction) and of
#: 2.0 (points) are both plausible; old runs.csv files had ``gap`` as a fraction
GAP = "gap_pp"


def gap_points(train_acc: Any, test_acc: Any) -> Any:
    """The generalization gap, train minus test accuracy in percentage points (floats or columns):
    the one definition behind runs.csv's :data:`GAP` and the gap tables."""
    return 100 * (train_acc - test_acc)


def as_text(value: Any) -> Any:
    """A list setting as its JSON text (``[0.3, 0.5]``), so that it compares, groups and labels."""
    return json.dumps(value) if isinstance(value, list) else value


def run_row(run: Run) -> dict[str, Any]:
    """One run as a flat row: identity, setup, reg settings (``reg.<name>``), metrics."""
    record = run.record
    # settings added to dropbench after this run was made: it ran with their declared default
    defaults = declared_defaults({s.key: record["config"].get(s.key) for s in GROUPS})
    config = {**{k: defaults[k] for k in SETUP_KEYS if k in defaults}, **record["config"]}
    final, best = record["final"], record["best"]
    row: dict[str, Any] = {"run": str(run.folder)}
    row.update({key: config[key] for key in REQUIRED_CONFIG})
    row.update({key: config.get(key) for key in SETUP_KEYS})
    resolved = with_defaults(record.get("resolved_config") or {}, defaults)
    # lists (model.hidden, reg.layer_p) as text, so that they compare and group
    row.update({k: as_text(v) for k, v in setup_settings(resolved).items()})
    row.update({f"reg.{key}": as_text(value) for key, value in reg_settings(resolved).items()})
    row.update({key: number(value) for key, value in final.items()})
    row["best_epoch"] = best.get("epoch")
    row["val/acc_best"] = number(best.get("val/acc"))
    row["val/loss_best"] = number(best.get("val/loss"))
    row["task"] = recorded_task(record).name
    if row["task"] == Classification.name:
        row[GAP] = gap_points(row["train/acc"], row["test/acc"])
    return row


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """All finished runs, one row each, sorted by dataset, model, reg, p and seed."""
    frame = pd.DataFrame([run_row(run) for run in runs])
    frame["p"] = pd.to_numeric(frame["p"]).astype(float)  # null p (reg ignores it) -> NaN
    return frame.sort_values(
        ["dataset", "model", "reg", "p", "seed", "run"], na_position="first"
    ).reset_index(drop=True)


def in_shape(run: Run) -> tuple[int, int, int] | None:
    """The (C, H, W) of the run's inputs, when recorded."""
    shape = (run.record.get("data") or {}).get("shape")
    return tuple(shape) if isinstance(shape, list) and len(shape) == 3 else None
