"""Finding 10's T-curve, paired: per model, MC dropout's test error after T passes minus weight
scaling's in the same runs, with a 95% paired-t interval over seeds (from each run's
``mc_curve`` in metrics.json; the report's ``*_mc_curve`` figure draws the means).

    python scripts/mc_curve_check.py results/sweeps/ood_mc
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats


def main() -> None:
    sweep = Path(sys.argv[1] if len(sys.argv) > 1 else "results/sweeps/ood_mc")
    by_model: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(sweep.rglob("metrics.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "finished" and record.get("mc_curve"):
            by_model[record["config"]["model"]].append(record)
    for model, records in by_model.items():
        ladder = records[0]["mc_curve"]["t"]
        deterministic = np.array([100 * (1 - r["final"]["test/acc"]) for r in records])
        print(f"{model}: n = {len(records)} seeds, weight scaling {deterministic.mean():.2f}% test error")
        for i, t in enumerate(ladder):
            mc = np.array([100 * (1 - r["mc_curve"]["test_mc/acc"][i]) for r in records])
            diff = mc - deterministic
            low, high = (
                stats.ttest_rel(mc, deterministic).confidence_interval(0.95) if len(records) > 1 else (0, 0)
            )
            interval = f"[{low:+.2f}, {high:+.2f}]" if len(records) > 1 else "(one seed: no interval)"
            print(f"  T={t:>3}: MC {mc.mean():.2f}%, MC - weight scaling {diff.mean():+.2f} {interval} pp")


if __name__ == "__main__":
    main()
