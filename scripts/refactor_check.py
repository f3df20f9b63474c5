"""Refactors move no numbers: record tiny fixed-seed runs' metrics, or compare against a record.

    python scripts/refactor_check.py record results/refactor_baseline.json
    python scripts/refactor_check.py compare results/refactor_baseline.json

Each case is one ``dropbench run`` (real MNIST from ``$DROPBENCH_DATA``, default ../shared/data;
1,000 training examples, 2 epochs, 1 thread, CPU) in a fresh results folder. What is compared
is every number of the run: each epoch's ``train/*`` and ``val/*`` and every final metric,
exactly (==), not the files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = [
    "dataset.train_size=1000",
    "dataset.val_size=500",
    "epochs=2",
    "threads=1",
    "device=cpu",
    "seed=3",
]
CASES = {
    "mlp_none": ["model=mlp", "model.hidden=[64,64]", "reg=none"],
    "mlp_dropout": ["model=mlp", "model.hidden=[64,64]", "reg=dropout", "p=0.3"],
    "mlp_dropconnect": ["model=mlp", "model.hidden=[64,64]", "reg=dropconnect", "p=0.5"],
    "mlp_l2_maxnorm": ["model=mlp", "model.hidden=[64,64]", "reg=l2", "max_norm=0.5"],
    "cnn_none": ["model=cnn", "model.channels=[8,16]", "model.fc=[32]", "reg=none"],
    "cnn_spatial": ["model=cnn", "model.channels=[8,16]", "model.fc=[32]", "reg=spatial", "p=0.2"],
    "cnn_dropconnect": ["model=cnn", "model.channels=[8,16]", "model.fc=[32]", "reg=dropconnect"],
    "lstm_none": ["model=lstm", "model.hidden=32", "reg=none"],
    "lstm_dropout": ["model=lstm", "model.hidden=32", "reg=dropout", "p=0.3"],
    "lstm_variational": ["model=lstm", "model.hidden=32", "reg=variational", "p=0.25"],
    "lstm_dropconnect": ["model=lstm", "model.hidden=32", "reg=dropconnect", "p=0.3"],
}


def numbers(record: dict) -> dict[str, float]:
    """Every metric of a run: per-epoch split/metric values and the final ones (no timings)."""
    found = {}
    for row in record["history"]:
        for key, value in row.items():
            if "/" in key:
                found[f"epoch{row['epoch']}:{key}"] = value
    found.update({f"final:{k}": v for k, v in record["final"].items()})
    found["best:epoch"] = record["best"]["epoch"]
    return found


def run_case(overrides: list[str], results: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "dropbench", "run", *COMMON, *overrides, f"results_dir={results}"]
    env = {**os.environ, "DROPBENCH_DATA": os.environ.get("DROPBENCH_DATA", "../shared/data")}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    (path,) = results.rglob("metrics.json")
    return numbers(json.loads(path.read_text()))


def measure(cases: list[str]) -> dict[str, dict[str, float]]:
    measured = {}
    for name in cases:
        with tempfile.TemporaryDirectory() as tmp:
            measured[name] = run_case(CASES[name], Path(tmp))
        print(f"{name}: test/acc {measured[name]['final:test/acc']:.4f}", flush=True)
    return measured


def compare(recorded: dict, measured: dict) -> int:
    """Print each case as identical or its differing numbers; returns the count of differing cases.

    Every recorded number must be there and equal; numbers a feature adds (new metrics) are
    counted, not compared: adding a metric moves no number."""
    bad = 0
    for name, now in measured.items():
        then = recorded[name]
        diffs = [k for k in then if then[k] != now.get(k)]
        added = len(now.keys() - then.keys())
        more = f", {added} new number{'s' if added != 1 else ''} not compared" if added else ""
        if diffs:
            bad += 1
            shown = "; ".join(f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(diffs)[:4])
            print(f"DIFFERS {name} ({len(diffs)} of {len(then)} numbers{more}): {shown}")
        else:
            print(f"identical {name} ({len(then)} numbers{more})")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["record", "compare"])
    parser.add_argument("file", type=Path)
    parser.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    measured = measure(args.only)
    if args.mode == "record":
        args.file.write_text(json.dumps(measured, indent=1) + "\n")
        print(f"recorded {len(measured)} cases in {args.file}")
        return
    bad = compare(json.loads(args.file.read_text()), measured)
    print(f"{len(measured) - bad} of {len(measured)} cases identical")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
