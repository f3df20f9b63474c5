"""Regenerate the literature findings in ``results/findings/``: run each experiment's sweep, report it.

Each finding is one ``configs/experiment/<name>.yaml``. This script runs
``dropbench run -m experiment=<name>`` (finished runs are skipped, so an interrupted
regeneration continues where it stopped) and then ``dropbench report`` into
``results/findings/<name>/``. The paragraph that reads each table (the claim, the paper's
number, our protocol and whether it held) is ``results/findings/<name>/README.md``, written by
hand from the numbers: this script never touches it.

    DROPBENCH_DATA=../shared/data python scripts/regenerate_results.py [NAME ...] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

#: The experiments behind results/findings/, in the order the results README lists them.
FINDINGS = ["mlp_p_curve"]


def run(*args: str) -> None:
    print("+ dropbench", " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "dropbench", *args])
    if done.returncode != 0:
        sys.exit(f"dropbench {' '.join(args)} failed with exit code {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=FINDINGS, help=f"experiments (default: {FINDINGS})")
    parser.add_argument("--seeds", help="replace the experiments' seeds, e.g. 3,4,5 to check the spread")
    parser.add_argument("--results-dir", default="results", help="where the sweeps' runs go")
    parser.add_argument("--out", type=Path, default=Path("results/findings"))
    args = parser.parse_args()
    for name in args.names:
        seeds = [f"seed={args.seeds}"] if args.seeds else []
        sweep_name = f"{name}_seeds{args.seeds.replace(',', '-')}" if args.seeds else name
        run(
            "run", "-m", f"experiment={name}", f"name={sweep_name}", f"results_dir={args.results_dir}", *seeds
        )
        sweep = Path(args.results_dir) / "sweeps" / sweep_name
        run("report", str(sweep), "--out", str(args.out / sweep_name))


if __name__ == "__main__":
    main()
