"""A run is counted once: copies of one run found in several folders are merged into one.

The same run can sit under ``results/runs/...`` and in one or more sweep folders under the same
PATH. Counted as separate runs, its seed would count twice and a cell's ``n`` and spread would be
wrong. Copies are told apart from distinct runs by :func:`run_identity` alone, so that a later,
schema-derived identity replaces one function.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dropbench.errors import DropbenchError
from dropbench.report.plots import with_p
from dropbench.report.runs import Run
from dropbench.report.tables import Table
from dropbench.schema import DEFINING, GROUPS, config_conflict, result_defining

#: metrics.json sections that must agree between copies of one run
COMPARED = ("final", "best")


@dataclass(frozen=True)
class Merge:
    """Copies of one run: ``kept`` is the folder the report reads, ``copies`` the others."""

    kept: Path
    copies: tuple[Path, ...]


def defining(run: Run) -> dict[str, Any] | None:
    """The settings that decide the run's numbers, or None for an older record without them."""
    resolved = run.record.get("resolved_config")
    if not isinstance(resolved, dict) or not isinstance(resolved.get("reg"), dict):
        return None
    return result_defining(resolved, bool(resolved["reg"].get("uses_p", True)))


def run_identity(run: Run) -> str:
    """Equal for two folders holding the same run: same result-defining config and seed.

    p is part of it only when the regularizer uses p, so ``reg=none`` swept at several p is one
    run. Records without ``resolved_config`` cannot be compared, so their folder is their identity.
    """
    settings = defining(run)
    if settings is None:
        return f"folder:{run.folder.resolve()}"
    config = run.record["config"]
    seed = config["seed"]  # also in the config; named so the seed can never be dropped
    # the group choices: two regularizers can resolve to the same settings and differ only in
    # their (wiring) layers, as spatial and element-wise dropout in the same places do
    choices = {s.key: config.get(s.key) for s in GROUPS if s.role in DEFINING}
    return json.dumps({"seed": seed, "choices": choices, "config": settings}, sort_keys=True, default=str)


def disagreement(first: Run, other: Run) -> str | None:
    """The first metric two copies disagree on, as 'final/test/acc: 0.97 vs 0.98', or None."""
    for section in COMPARED:
        mine, theirs = first.record.get(section) or {}, other.record.get(section) or {}
        for key in sorted(mine.keys() | theirs.keys()):
            if mine.get(key) != theirs.get(key):  # a copy is the same file: exact equality
                return f"{section}/{key}: {mine.get(key)!r} vs {theirs.get(key)!r}"
    return None


def merge_copies(runs: list[Run]) -> tuple[list[Run], list[Merge]]:
    """One run per identity (the first folder in sorted order) and the merges made.

    Copies whose metrics differ are not the same result twice but two results claiming one
    config and seed; picking either would be arbitrary, so that is an error.
    """
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda run: str(run.folder)):
        groups[run_identity(run)].append(run)
    kept, merges = [], []
    for copies in groups.values():
        first = copies[0]
        for other in copies[1:]:
            differs = disagreement(first, other)
            if differs:
                raise DropbenchError(
                    f"{first.folder} and {other.folder} hold the same run (same config, seed "
                    f"{first.record['config']['seed']}) with different metrics ({differs}); "
                    "keep one of them under PATH, or report each in its own dropbench report"
                )
        kept.append(first)
        if len(copies) > 1:
            merges.append(Merge(first.folder, tuple(other.folder for other in copies[1:])))
    return kept, merges


def merges_table(merges: list[Merge]) -> Table:
    """Which folders were read as copies of one run."""
    numbers = pd.DataFrame(
        {
            "run": [str(merge.kept) for merge in merges],
            "copies": [len(merge.copies) + 1 for merge in merges],
            "also_in": ["; ".join(map(str, merge.copies)) for merge in merges],
        }
    )
    shown = numbers.rename(columns={"run": "run (read)", "copies": "copies", "also_in": "same run also in"})
    note = (
        "the same run (same result-defining config and seed, identical metrics) was found in several "
        "folders; each is counted once, so n counts distinct seeds"
    )
    return Table("merged", "runs found more than once", note, shown, numbers, text_columns=1)


def check_one_run_per_seed(frame: pd.DataFrame, runs: dict[str, Run]) -> None:
    """Every table cell (label, p) holds at most one run per seed, or n would not count seeds.

    Two distinct runs land in one cell when they differ in a setting the row label does not
    name; the error says which, so they can be reported apart.
    """
    cells = frame.groupby(["label", "p", "seed"], dropna=False)["run"]
    for (label, p, seed), folders in cells:
        if len(folders) < 2:
            continue
        first, other = (runs[folder] for folder in folders.iloc[:2])
        a, b = defining(first), defining(other)
        why = config_conflict(a, b) if a is not None and b is not None else "no resolved_config to compare"
        raise DropbenchError(
            f"{first.folder} and {other.folder} are both {with_p(label, p)} seed {seed} but are different "
            f"runs ({why}); report them under separate PATHs"
        )
