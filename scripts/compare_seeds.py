"""Do re-runs with other seeds agree with a committed table? Compares two reports' main tables.

Reads every ``*_main.csv`` that ``dropbench report`` wrote into both folders (the committed
finding and its re-run, e.g. ``scripts/regenerate_results.py NAME --seeds 3,4,5``), matches
rows by file, label and p, and calls a cell in agreement when the two means differ by no more
than the sum of their standard deviations over seeds (their mean ± std intervals overlap).

    python scripts/compare_seeds.py results/findings/mlp_p_curve results/findings/mlp_p_curve_seeds3-4-5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

KEYS = ["table", "label", "p"]


def main_tables(folder: Path) -> pd.DataFrame:
    frames = [pd.read_csv(path).assign(table=path.stem) for path in sorted(folder.glob("*_main.csv"))]
    if not frames:
        raise SystemExit(f"no *_main.csv in {folder}: point at a `dropbench report --out` folder")
    return pd.concat(frames).fillna({"p": -1.0})  # reg=none rows have no p; -1 matches them


def compare(committed: Path, rerun: Path) -> pd.DataFrame:
    joined = main_tables(committed).merge(main_tables(rerun), on=KEYS, suffixes=("", "_rerun"))
    joined["difference"] = joined["test/error_mean_rerun"] - joined["test/error_mean"]
    joined["allowed"] = joined["test/error_std"] + joined["test/error_std_rerun"]
    joined["agrees"] = joined["difference"].abs() <= joined["allowed"]
    return joined


def markdown(joined: pd.DataFrame, committed: Path, rerun: Path) -> str:
    lines = [
        f"Test error (%) of `{committed}` (committed) against `{rerun}` (the re-run):",
        "",
        "| table | row | p | committed | re-run | difference | within the spread? |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"test/error_mean": "mean", "test/error_std": "std", "test/error_mean_rerun": "mean_rerun"}
    names["test/error_std_rerun"] = "std_rerun"
    for row in joined.rename(columns=names).itertuples(index=False):
        p = "—" if row.p < 0 else f"{row.p:g}"
        old, new = f"{row.mean:.2f} ± {row.std:.2f}", f"{row.mean_rerun:.2f} ± {row.std_rerun:.2f}"
        verdict = "yes" if row.agrees else "**no**"
        lines.append(
            f"| {row.table} | {row.label} | {p} | {old} | {new} | {row.difference:+.2f} | {verdict} |"
        )
    lines += ["", f"{int(joined['agrees'].sum())} of {len(joined)} cells agree."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", type=Path)
    parser.add_argument("rerun", type=Path)
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    text = markdown(compare(args.committed, args.rerun), args.committed, args.rerun)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
