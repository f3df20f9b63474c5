"""Regenerate the literature findings in ``results/findings/``: run each finding's sweeps, report them.

A finding is one sweep folder, filled by one or more ``configs/experiment/<name>.yaml`` (a
Hydra grid is a product, so rows that are not, such as DropConnect's own settings next to
dropout, come from a second experiment that writes into the same folder). A fair best-p
finding is a folder of experiments, ``configs/experiment/<finding>/``: a shared
``protocol.yaml`` and one file per regularizer sweeping its own grid of p. This script runs
``dropbench run -m experiment=<name>`` for each of them (finished runs are skipped, so an
interrupted regeneration continues where it stopped) and then ``dropbench report`` into
``results/findings/<finding>/``. The paragraph that reads each table (the claim, the paper's
number, our protocol and whether it held) is ``results/findings/<finding>/README.md``, written
by hand from the numbers: this script never touches it.

    export DROPBENCH_DATA=../shared/data
    python scripts/regenerate_results.py [FINDING ...] [--seeds 3,4,5] [-o OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent.parent / "configs" / "experiment"
PROTOCOL = "protocol"  # a fair finding's shared setup: no experiment of its own


def fair(finding: str) -> list[str]:
    """The experiments of a fair best-p finding: one per regularizer, the baseline first."""
    regs = sorted(p.stem for p in (EXPERIMENTS / finding).glob("*.yaml") if p.stem != PROTOCOL)
    return [f"{finding}/{reg}" for reg in sorted(regs, key=lambda reg: reg != "none")]


#: finding (its sweep folder and results/findings/ folder) -> the experiments that fill it, in
#: the order the results README lists them. GPU marks a protocol sized for a GPU (hours on 2 CPU cores).
FINDINGS = {
    "mlp_table9": ["mlp_table9", "mlp_table9_dropconnect"],
    "mlp_p_curve": ["mlp_p_curve"],
    "mlp_dropconnect": ["mlp_dropconnect", "mlp_dropconnect_baselines"],  # GPU
    "cnn_spatial": ["cnn_spatial"],
    "lstm_variational": ["lstm_variational"],
    "mlp_mc_dropout": ["mlp_mc_dropout"],
    "ae_dropout": ["ae_dropout"],
    "mlp_dropconnect_fair": fair("mlp_dropconnect_fair"),
    "cnn_fair": fair("cnn_fair"),
    "lstm_fair": fair("lstm_fair"),
    "ood_mc": ["ood_mc"],
    "bn_dropout": ["bn_dropout"],
    "data_size": [f"data_size/n{n}" for n in (100, 500, 2000, 10000, 20000)],
    "placement": fair("placement"),
    "table9_penalties": [f"table9_penalties/{e}" for e in ("none", "l1", "dropout", "dropout_maxnorm")],
    "per_layer": [f"per_layer/{e}" for e in ("none", "uniform", "recommended", "graded")],
    "stochastic_depth": fair("stochastic_depth"),
}
GPU = {"mlp_dropconnect"}
#: the settings a finding's report chooses on validation together with p (report --tune)
TUNED = {"lstm_fair": ["reg.p_hidden"]}
#: the settings a finding's report splits its groups by (report --by): its conditions, not methods
BY = {"bn_dropout": ["model.norm"], "data_size": ["dataset.train_size"], "placement": ["model.activation"]}


def dropbench(*args: str) -> None:
    print("+ dropbench", " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "dropbench", *args])
    if done.returncode != 0:
        sys.exit(f"dropbench {' '.join(args)} failed with exit code {done.returncode}")


def regenerate(finding: str, seeds: str | None, results_dir: str, out: Path, extra: list[str]) -> None:
    """Run every experiment of ``finding`` (with ``seeds`` instead of its own, if given, and the
    ``extra`` overrides), then report."""
    sweep_name = f"{finding}_seeds{seeds.replace(',', '-')}" if seeds else finding
    for experiment in FINDINGS[finding]:
        overrides = [f"experiment={experiment}", f"name={sweep_name}", f"results_dir={results_dir}"]
        dropbench("run", "-m", *overrides, *([f"seed={seeds}"] if seeds else []), *extra)
    tune = [argument for key in TUNED.get(finding, []) for argument in ("--tune", key)]
    by = [argument for key in BY.get(finding, []) for argument in ("--by", key)]
    sweep = str(Path(results_dir) / "sweeps" / sweep_name)
    dropbench("report", sweep, "--out", str(out / sweep_name), *tune, *by)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "findings", nargs="*", help=f"findings to regenerate (default: all): {', '.join(FINDINGS)}"
    )
    parser.add_argument("--seeds", help="replace the experiments' seeds, e.g. 3,4,5 to check the spread")
    parser.add_argument(
        "--cpu-only", action="store_true", help=f"skip the GPU-sized findings ({', '.join(GPU)})"
    )
    parser.add_argument("--results-dir", default="results", help="where the sweeps' runs go")
    parser.add_argument("--out", type=Path, default=Path("results/findings"))
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        help="one more override for every run, e.g. -o hydra/launcher=joblib -o hydra.launcher.n_jobs=8",
    )
    args = parser.parse_args()
    unknown = [name for name in args.findings if name not in FINDINGS]
    if unknown:
        parser.error(f"unknown finding {unknown[0]!r}; choose from {', '.join(FINDINGS)}")
    chosen = args.findings or [name for name in FINDINGS if not (args.cpu_only and name in GPU)]
    for finding in chosen:
        regenerate(finding, args.seeds, args.results_dir, args.out, args.override)


if __name__ == "__main__":
    main()
