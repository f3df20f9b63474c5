"""Out-of-distribution detection tables of one (dataset, model) group (runs with ``ood/*``).

Each run scores the in-distribution test images and another dataset's (``eval.ood``) with every
uncertainty score it has (:func:`dropbench.metrics.detection_metrics`): weight scaling's ``msp``
(negated maximum softmax probability) and ``entropy``, MC dropout's ``entropy_mc`` and
``mi_mc`` (mutual information). The scores of one run share its weights, so a score is compared
with the deterministic baseline ``msp`` paired by seed, like regularizers in :mod:`paired`.
"""

from __future__ import annotations

import pandas as pd

from dropbench.report import paired
from dropbench.report.plots import same_p, with_p
from dropbench.report.tables import Table, cell

AUROC, FPR = "ood/auroc_", "ood/fpr95_"
BASELINE = "msp"  # the deterministic softmax's confidence (Hendrycks & Gimpel 2017)
SCORE_NAMES = {
    "msp": "max softmax prob (weight scaling)",
    "entropy": "entropy (weight scaling)",
    "entropy_mc": "predictive entropy (MC)",
    "mi_mc": "mutual information (MC)",
}


def scores_of(frame: pd.DataFrame) -> list[str]:
    """The scores some run of ``frame`` has an AUROC for, the baseline first."""
    found = [c.removeprefix(AUROC) for c in frame.columns if c.startswith(AUROC) and frame[c].notna().any()]
    return sorted(found, key=lambda score: (score != BASELINE, score))


def best_runs(frame: pd.DataFrame, best: pd.DataFrame):
    """(label, p, runs) of each best-p row."""
    for label, p in zip(best["label"], best["p"], strict=True):
        yield label, p, frame[(frame["label"] == label) & same_p(frame["p"], p)]


def ood_table(frame: pd.DataFrame, best: pd.DataFrame) -> Table | None:
    """AUROC and FPR at 95% TPR (both in %) of every score, per regularizer at its best p."""
    scores = scores_of(frame)
    if not scores:
        return None
    rows = []
    for label, p, runs in best_runs(frame, best):
        for score in scores:
            auroc, fpr = 100 * runs[AUROC + score].dropna(), 100 * runs[FPR + score].dropna()
            if auroc.empty:
                continue
            rows.append(
                {
                    "label": label,
                    "p": p,
                    "score": score,
                    "n": len(auroc),
                    "auroc_mean": auroc.mean(),
                    "auroc_std": auroc.std(ddof=1),
                    "fpr95_mean": fpr.mean(),
                    "fpr95_std": fpr.std(ddof=1),
                }
            )
    numbers = pd.DataFrame(rows)
    shown = pd.DataFrame(
        {
            "regularizer": [
                with_p(label, p) for label, p in zip(numbers["label"], numbers["p"], strict=True)
            ],
            "score": numbers["score"].map(lambda s: SCORE_NAMES.get(s, s)),
            "AUROC (%)": [
                cell(m, s, n, with_n=False)
                for m, s, n in zip(numbers["auroc_mean"], numbers["auroc_std"], numbers["n"], strict=True)
            ],
            "FPR at 95% TPR (%)": [
                cell(m, s, n, with_n=False)
                for m, s, n in zip(numbers["fpr95_mean"], numbers["fpr95_std"], numbers["n"], strict=True)
            ],
            "n": numbers["n"],
        }
    )
    note = (
        "out-of-distribution detection: the run's test images are the negatives, eval.ood's test images "
        "the positives; AUROC (higher is better, 50 = chance) and the false positive rate at 95% true "
        "positive rate (lower is better), mean ± sample std over the n seeds, at each regularizer's best p"
    )
    return Table("ood", "OOD detection per score", note, shown, numbers, text_columns=2)


def ood_paired_table(frame: pd.DataFrame, best: pd.DataFrame) -> Table | None:
    """Each score's AUROC minus the baseline's (msp) in the same runs, paired by seed, Holm across
    the table; verdict better when the interval is above 0 (higher AUROC is better)."""
    scores = scores_of(frame)
    if BASELINE not in scores or len(scores) < 2:
        return None
    compared = []
    for label, p, runs in best_runs(frame, best):
        arm = {
            score: paired.Arm(
                f"{with_p(label, p)}: {score}",
                float("nan"),
                pd.Series(100 * runs[AUROC + score].to_numpy(), index=runs["seed"].to_numpy())
                .dropna()
                .sort_index(),
            )
            for score in scores
        }
        compared += [
            paired.compare(arm[score], arm[BASELINE])
            | {"comparison": f"{with_p(label, p)}: {score} − {BASELINE}"}
            for score in scores
            if score != BASELINE
        ]
    rows = pd.DataFrame(compared)
    rows["p_holm"] = paired.holm(rows["p"])
    rows["verdict"] = [
        paired.verdict(r.ci_low, r.ci_high, r.p_holm, r.diff_mean, False) for r in rows.itertuples()
    ]
    rows["seeds_80"] = [paired.seeds_text(row) for _, row in rows.iterrows()]
    interval = [
        "" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
        for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
    ]
    shown = pd.DataFrame(
        {
            "comparison": rows["comparison"],
            "verdict": rows["verdict"],
            "n": rows["n"],
            "Δ AUROC (pp)": rows["diff_mean"].map(paired.number_text),
            "95% CI": interval,
            "p": rows["p"].map(paired.p_text),
            "p (Holm)": rows["p_holm"].map(paired.p_text),
            f"seeds for {paired.POWER:.0%} power": rows["seeds_80"],
            "note": rows["note"],
        }
    )
    note = (
        f"paired by seed: each score's OOD AUROC minus the deterministic max softmax probability's in the "
        f"same runs (percentage points), mean with a 95% paired-t interval; Holm across the "
        f"{rows['p'].notna().sum()} tests; better or worse (higher AUROC is better) when the interval "
        f"excludes 0 and the Holm p is below {paired.ALPHA:g}, else not resolved"
    )
    return Table(
        "ood_paired", "OOD detection: each score against max softmax probability", note, shown, rows, 2
    )
