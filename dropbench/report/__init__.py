"""``dropbench report PATH...``: tables and figures comparing the finished runs under PATH.

Reads each run's ``metrics.json`` (and ``weights.pt`` for weight maps), never logs. Writes
``runs.csv`` (one row per finished run), per (dataset, model) group the main, best-p, gap and
MC dropout tables as Markdown, CSV and LaTeX, and the figures as PNG and SVG; prints the
Markdown. Unfinished, interrupted, diverged and corrupt runs are listed apart, with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dropbench.errors import DropbenchError

METRICS = ("error", "acc")
SPLITS = ("test", "test_last", "test_mc")
OUTPUTS = """\
writes into DIR:
  report.md                     everything printed, as one Markdown file
  runs.csv                      one row per finished run: setup, reg settings, every final metric,
                                gap_pp (train acc - test acc, in percentage points)
  (with --by KEY, every D_M_ file below is one per value v of KEY too: D_M_KEYv_main.md ...)
  D_M_by_KEY.{md,csv,tex,png,svg}  with one --by KEY: every value's paired comparisons side by side
  D_M_main.{md,csv,tex}         per dataset D and model M: metric per regularizer and p, mean ± std (n)
  D_M_best_p.{md,csv,tex}       each regularizer at its best p (and --tune keys) by mean validation accuracy
  D_M_gap.{md,csv,tex}          train acc - test acc, in percentage points
  D_M_mc.{md,csv,tex}           deterministic vs MC dropout acc, NLL, ECE (runs with test_mc/*)
  D_M_paired.{md,csv,tex}       regularizers at their best p against none and each other, paired by seed
  D_M_ood.{md,csv,tex}          OOD detection AUROC and FPR at 95% TPR per score (runs with eval.ood)
  D_M_ood_paired.{md,csv,tex}   each score's AUROC against max softmax probability, paired by seed
  D_M_error_vs_p.{png,svg}      the metric against p (acc_vs_p with --metric acc)
  D_M_curves.{png,svg}          train and validation curves at each regularizer's best p
  D_M_paired.{png,svg}          the paired differences with their 95% intervals (forest plot)
  D_M_weights.{png,svg}         MLP first-layer weights at each regularizer's best p
  D_M_reliability.{png,svg}     reliability diagrams: weight scaling vs MC dropout at each best p
  D_M_mc_curve.{png,svg}        MC dropout's error, NLL, ECE against T vs weight scaling (runs with mc_curve)
  merged.{md,csv,tex}           runs found in several folders, each counted once
  excluded.{md,csv,tex}         unfinished, interrupted, diverged and corrupt runs, with the reason
"""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as the one line every dropbench error is: ``dropbench: error: ...``, status 2."""

    def error(self, message: str):
        print(f"dropbench: error: {message}", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    made = OneLineParser(
        prog="dropbench report",
        description="Tables and figures comparing the finished runs under PATH (from their metrics.json).",
        epilog=OUTPUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    made.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="folders searched for runs, recursively"
    )
    made.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: FIRST_PATH/report)")
    made.add_argument(
        "--metric",
        choices=METRICS,
        default="error",
        help="headline number: error = 100 (1 - acc), or acc; in %%",
    )
    made.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="test: best-validation weights (default); test_last: last epoch's; test_mc: MC dropout",
    )
    made.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="KEY",
        help="a setting chosen on validation together with p, not a method of its own "
        "(e.g. --tune reg.p_hidden: variational dropout at its best p and recurrent rate); repeatable",
    )
    made.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="KEY",
        help="a setting that splits the report into one group per value, each with its own best p "
        "and comparisons (e.g. --by dataset.train_size: dropout against none at each size); repeatable",
    )
    return made


def check_paths(paths: list[Path]) -> None:
    """Every PATH must exist."""
    for path in paths:
        if not path.exists():
            raise DropbenchError(f"{str(path)!r} does not exist")


def check_out(out: Path | None) -> None:
    """``--out`` must be a folder, or a path where one can be made (nothing is made here: a
    report with nothing to report writes nothing)."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise DropbenchError(
            f"--out {str(out)!r} is a file, not a folder; name a folder (it is made if missing)"
        )
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DropbenchError(f"--out {str(out)!r} cannot be written ({existing} is not a writable folder)")


def main(arguments: list[str]) -> int:
    """Parse, make the report, print its Markdown; a user error is one line and status 2."""
    args = parser().parse_args(arguments)
    try:
        check_paths(args.paths)  # before the heavy imports (torch, pandas: seconds), so a typo fails at once
        check_out(args.out)
        from dropbench.report.build import Options, make_report

        out = make_report(
            args.paths, args.out, Options(args.metric, args.split, tuple(args.tune), tuple(args.by))
        )
    except DropbenchError as error:
        print(f"dropbench: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a folder that cannot be made: earlier files stay whole
        where = f" {error.filename}" if error.filename else ""
        print(
            f"dropbench: error: cannot write the report:{where}: {error.strerror or error}", file=sys.stderr
        )
        return 2
    print("\n".join(out.sections))
    print(f"dropbench: wrote {len(out.files)} files to {out.folder}", file=sys.stderr)
    return 0
