"""Re-judge the committed findings with paired-by-seed comparisons, from their ``runs.csv`` alone.

The run folders are not in git, so a finding cannot be re-reported from its ``metrics.json``.
Its ``runs.csv`` has every column the paired table needs (label, reg, p, seed, val/acc_best,
test/acc), so this reads it and, per (dataset, model) group, calls ``best_p_table`` and
``paired_table`` as ``dropbench report`` does (test error, p chosen on validation). It writes
``<dataset>_<model>_paired.{md,csv,tex}`` and the forest plot ``_paired.{png,svg}`` into the
finding's folder and prints the Markdown.

``mlp_mc_dropout`` has one regularizer per group, so its paired table is empty: MC dropout
against weight scaling is the same runs read two ways. For runs with ``test_mc/acc`` a second
row label, "<label> (MC)", is derived whose test/* columns are the run's test_mc/* ones (same
seed, same p, same validation number), and the pair is written as ``_paired_mc``. The claim is
about NLL, which the paired table does not take as a metric, so ``_paired_mc_nll`` pairs the
two NLLs at every p with the same library functions (``paired.comparisons``, ``paired.holm``,
``paired.verdict``), in thousandths of a nat, Holm across the group's p values.

    python scripts/rejudge_findings.py                    # every finding with a runs.csv
    python scripts/rejudge_findings.py mlp_table9 cnn_spatial
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dropbench.report import paired, plots, tables
from dropbench.report.render import markdown, save_figure, write_table

FINDINGS = Path(__file__).resolve().parent.parent / "results" / "findings"
SKIP = {"ae_dropout"}  # reported elsewhere
METRIC, SPLIT = "error", "test"
MC_SUFFIX = " (MC)"
NLL_HEADING = "Δ test NLL (×10⁻³ nats)"


def read_runs(path: Path) -> pd.DataFrame:
    """runs.csv with the report's dtypes: p float (NaN for regs that ignore p), seed int; only
    empty cells are missing (a setting spelled "none" or "None" stays text)."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    frame["p"] = pd.to_numeric(frame["p"], errors="raise").astype(float)
    frame["seed"] = frame["seed"].astype(int)
    duplicated = frame.duplicated(["dataset", "model", "label", "p", "seed"], keep=False)
    if duplicated.any():  # build.py's dedupe check needs the run folders; this is its condition
        raise SystemExit(
            f"{path}: more than one run per (label, p, seed): {frame.loc[duplicated, 'run'].tolist()}"
        )
    return frame


def mc_frame(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The runs with MC metrics twice: as they are (weight scaling) and as "<label> (MC)", whose
    test/* columns are the run's test_mc/*. None when no run has test_mc/acc."""
    if "test_mc/acc" not in frame or frame["test_mc/acc"].isna().all():
        return None
    runs = frame[frame["test_mc/acc"].notna()]
    mc = runs.assign(label=runs["label"] + MC_SUFFIX)
    for name in [c for c in runs.columns if c.startswith("test_mc/")]:
        mc[name.replace("test_mc/", "test/")] = runs[name]
    return pd.concat([runs, mc], ignore_index=True)


def nll_arms(runs: pd.DataFrame) -> list[paired.Arm]:
    """Weight scaling's and MC dropout's test NLL per seed (in 10^-3 nats) of one (label, p) cell."""
    label, p = runs["label"].iloc[0], runs["p"].iloc[0]
    return [
        paired.Arm(
            name, p, pd.Series(1000 * runs[f"{split}/nll"].to_numpy(), index=runs["seed"]).sort_index()
        )
        for name, split in ((label, "test"), (label + MC_SUFFIX, "test_mc"))
    ]


def mc_nll_table(frame: pd.DataFrame) -> tables.Table:
    """MC - weight scaling in test NLL at every (label, p) of the runs with test_mc/nll."""
    runs = frame[frame["test_mc/nll"].notna()]
    cells = [
        paired.comparisons(nll_arms(cell), True) for _, cell in runs.groupby(["label", "p"], dropna=False)
    ]
    rows = pd.concat(cells, ignore_index=True)
    rows["p_holm"] = paired.holm(rows["p"])
    rows["verdict"] = [
        paired.verdict(r.ci_low, r.ci_high, r.p_holm, r.diff_mean, True) for r in rows.itertuples()
    ]
    rows["seeds_80"] = [paired.seeds_text(row) for _, row in rows.iterrows()]
    shown = paired.shown(rows, f"{SPLIT} {METRIC}")
    shown = shown.rename(columns={shown.columns[3]: NLL_HEADING})
    note = (
        "paired by seed: MC dropout (T=50) minus weight scaling in test NLL (10^-3 nats), the same runs read "
        f"two ways at each p, mean with a 95% paired-t interval; Holm across the {len(rows)} tests; "
        "verdict and seeds for 80% power as in the paired table (lower NLL is better)"
    )
    return tables.Table("paired_mc_nll", "MC vs weight scaling, paired (test NLL)", note, shown, rows, 2)


def judge(frame: pd.DataFrame, stem: Path, title: str) -> str | None:
    """One group's paired table and forest plot, as build.group_tables/group_figures make them;
    returns its Markdown, or None when the group has fewer than two rows to compare."""
    measured = frame[tables.column(frame, f"{SPLIT}/acc").notna()]
    best = tables.best_p_table(measured, METRIC, SPLIT)
    table = paired.paired_table(measured, best.numbers, METRIC, SPLIT)
    if table is None:
        return None
    write_table(table, stem, f"{title}: {table.note}")
    palette = plots.colors(list(pd.unique(measured["label"])))
    heading, unit = f"{SPLIT} {METRIC}", paired.DIFF_UNITS[METRIC][0]
    figure = plots.forest(table.numbers, heading, f"{title}: paired differences at best p", palette, unit)
    if figure is not None:
        save_figure(figure, stem)
    return markdown(table)


def judge_group(group: pd.DataFrame, folder: Path) -> list[str]:
    """The paired table of one (dataset, model) group and, with MC metrics, its MC one."""
    dataset, model = group["dataset"].iloc[0], group["model"].iloc[0]
    title, prefix = f"{dataset} / {model}", f"{dataset}_{model}"
    sections = [f"## {folder.name}: {title}\n"]
    found = judge(group, folder / f"{prefix}_paired", title)
    sections.append(found or "One row at its best p: nothing to compare.\n")
    both = mc_frame(group)
    if both is not None:
        found = judge(both, folder / f"{prefix}_paired_mc", f"{title}, MC (T=50) vs weight scaling")
        sections.append(f"MC dropout's test_mc/* as the row '<label>{MC_SUFFIX}':\n\n{found}")
        nll = mc_nll_table(group)
        write_table(nll, folder / f"{prefix}_{nll.name}", f"{title}: {nll.note}")
        sections.append(markdown(nll))
    return sections


def judge_finding(folder: Path) -> list[str]:
    frame = read_runs(folder / "runs.csv")
    sections = []
    for _, group in frame.groupby(["dataset", "model"], sort=True):
        sections += judge_group(group.reset_index(drop=True), folder)
    return sections


def finding_folders(names: list[str]) -> list[Path]:
    """The named findings, or every folder under results/findings/ with a runs.csv."""
    if names:
        folders = [FINDINGS / name for name in names]
        missing = [str(f) for f in folders if not (f / "runs.csv").is_file()]
        if missing:
            raise SystemExit(f"no runs.csv in {', '.join(missing)}")
        return folders
    return sorted(f for f in FINDINGS.iterdir() if (f / "runs.csv").is_file() and f.name not in SKIP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("findings", nargs="*", help="folder names under results/findings/ (default: all)")
    for folder in finding_folders(parser.parse_args().findings):
        print("\n".join(judge_finding(folder)))


if __name__ == "__main__":
    main()
