"""DropConnect's Gaussian rows re-computed from saved weights: closed form against the paper's
sampled Algorithm 2 and against weight-scaling (mean) inference, with no retraining.

For every finished ``reg=dropconnect`` run under SWEEP, the script rebuilds the run's model from
its ``resolved_config.yaml`` and data (the same split), loads its best-validation
``weights.pt``, and evaluates validation and test with each inference mode of
``DropConnectLinear`` (``mean``, ``gaussian``: the closed form E[relu(u)], and
``gaussian_sampled``: Z draws per unit, the paper's). The recomputed mean-inference test
accuracy must equal the one the run recorded (else the rebuild is wrong and the script stops).
The sampled estimate is run only at the p's named by ``--sampled-p`` (it costs minutes per run
on a CPU). It then writes a Markdown table of:

- every run's test error under each mode, and closed form minus sampled (their Monte-Carlo error);
- per p, paired by seed, closed form minus mean and closed form minus sampled (95% paired-t);
- each mode's p chosen on mean validation accuracy, and ``dropout - DropConnect`` in test error
  at each one's chosen p (the dropout arm as ``dropbench report`` chooses and reads it),
  with Holm over that table and the report's verdict rule.

    python scripts/gaussian_rows.py results/sweeps/mlp_dropconnect_fair --sampled-p 0.3 \
        --out results/findings/mlp_dropconnect_fair/gaussian.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from dropbench.build import build_model, check_config, compose_config, load_data
from dropbench.metrics import prediction_metrics
from dropbench.regularizers import DropConnectLinear
from dropbench.report.labels import add_labels
from dropbench.report.paired import Arm, arms, compare, holm, verdict
from dropbench.report.runs import runs_frame, scan
from dropbench.report.tables import best_p_table
from dropbench.rundir import RunDir
from dropbench.schema import GROUPS
from dropbench.tasks import predict_log_probs

MODES = ("mean", "gaussian", "gaussian_sampled")
LABELS = {
    "mean": "mean (weight scaling)",
    "gaussian": "Gaussian, closed form",
    "gaussian_sampled": "Gaussian, sampled",
}


@dataclass
class Run:
    reg: str
    p: float
    seed: int
    recorded: dict  # the record's final metrics
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> split -> error %
    nll: dict[str, float] = field(default_factory=dict)  # mode -> test NLL
    max_prob_gap: float = float("nan")  # closed form vs sampled: largest |p_class| difference
    seconds: dict[str, float] = field(default_factory=dict)  # mode -> test pass wall time


def finished_runs(sweep: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(sweep.rglob(RunDir.METRICS)):
        record = json.loads(path.read_text())
        if record.get("status") == "finished" and (path.parent / RunDir.WEIGHTS).is_file():
            found.append((path.parent, record))
    return found


def set_inference(model: torch.nn.Module, mode: str, samples: int) -> list[DropConnectLinear]:
    layers = [m for m in model.modules() if isinstance(m, DropConnectLinear)]
    for layer in layers:
        layer.inference, layer.samples = mode, samples
    return layers


def evaluate(run_dir: Path, record: dict, modes: tuple[str, ...], samples: int, cache: dict) -> Run:
    # today's defaults of the run's group choices under its resolved settings: a run recorded
    # before a setting existed (``l1``, ``compile``) ran with that setting's default
    choices = [f"{g.key}={record['config'][g.key]}" for g in GROUPS if g.key in record["config"]]
    defaults = compose_config(choices)
    OmegaConf.set_struct(defaults, False)
    resolved = OmegaConf.load(run_dir / RunDir.RESOLVED_CONFIG)
    cfg = OmegaConf.merge(defaults, resolved)
    cfg.model, cfg.reg.layers = resolved.model, resolved.reg.layers  # the wiring as it ran, not merged
    knobs = check_config(cfg)
    key = json.dumps(OmegaConf.to_container(cfg.dataset), sort_keys=True)
    if key not in cache:
        cache[key] = load_data(cfg, knobs)
    data = cache[key]
    model = build_model(cfg, knobs, data)
    model.load_state_dict(torch.load(run_dir / RunDir.WEIGHTS, map_location=knobs.device, weights_only=True))
    model.eval()
    run = Run(str(record["config"]["reg"]), float(cfg.p), int(cfg.seed), record["final"])
    probs: dict[str, torch.Tensor] = {}
    for mode in modes:
        set_inference(model, mode, samples)
        torch.manual_seed(0)  # the sampled mode's draws
        run.errors[mode] = {}
        for split, x, y in (("val", data.val_x, data.val_y), ("test", data.test_x, data.test_y)):
            start = time.perf_counter()
            with torch.no_grad():
                log_probs = predict_log_probs(model, x, knobs.eval_batch_size)
            run.seconds[mode] = time.perf_counter() - start
            metrics = prediction_metrics(log_probs, y, split)
            run.errors[mode][split] = 100 * (1 - metrics[f"{split}/acc"])
            if split == "test":
                run.nll[mode], probs[mode] = metrics["test/nll"], log_probs.exp()
    if "gaussian_sampled" in probs:
        run.max_prob_gap = (probs["gaussian"] - probs["gaussian_sampled"]).abs().max().item()
    recorded, recomputed = 100 * (1 - run.recorded["test/acc"]), run.errors["mean"]["test"]
    if abs(recorded - recomputed) > 1e-9:
        raise SystemExit(f"{run_dir}: recomputed test error {recomputed:.4f}% != recorded {recorded:.4f}%")
    return run


def runs_table(runs: list[Run]) -> str:
    lines = [
        "| p | seed | test error %, mean | closed form | sampled | closed − sampled (pp) | max abs prob gap |"
        " test NLL mean / closed / sampled | seconds per test pass, mean / closed / sampled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        err = {m: run.errors.get(m, {}).get("test") for m in MODES}
        cell = {m: "—" if v is None else f"{v:.2f}" for m, v in err.items()}
        gap = "—" if err["gaussian_sampled"] is None else f"{err['gaussian'] - err['gaussian_sampled']:+.2f}"
        prob = "—" if run.max_prob_gap != run.max_prob_gap else f"{run.max_prob_gap:.4f}"
        nll = " / ".join(f"{run.nll[m]:.4f}" if m in run.nll else "—" for m in MODES)
        secs = " / ".join(f"{run.seconds[m]:.1f}" if m in run.seconds else "—" for m in MODES)
        lines.append(
            f"| {run.p:g} | {run.seed} | {cell['mean']} | {cell['gaussian']} | {cell['gaussian_sampled']} | "
            f"{gap} | {prob} | {nll} | {secs} |"
        )
    return "\n".join(lines) + "\n"


def arm(runs: list[Run], label: str, p: float, mode: str) -> Arm:
    values = {r.seed: r.errors[mode]["test"] for r in runs if r.p == p and mode in r.errors}
    return Arm(label, p, pd.Series(values).sort_index())


def interval_text(row: dict) -> str:
    return f"{row['diff_mean']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def per_p_table(runs: list[Run]) -> str:
    lines = [
        "| p | comparison (A − B, test error) | Δ [95% CI] pp | p (paired t) | n |",
        "|---|---|---|---|---|",
    ]
    for p in sorted({r.p for r in runs}):
        closed = arm(runs, LABELS["gaussian"], p, "gaussian")
        for other in ("mean", "gaussian_sampled"):
            b = arm(runs, LABELS[other], p, other)
            if len(b.values) < 2:
                continue
            row = compare(closed, b)
            lines.append(
                f"| {p:g} | {closed.label} − {b.label} | {interval_text(row)} | {row['p']:.3f} | {row['n']} |"
            )
    return "\n".join(lines) + "\n"


def chosen_p(runs: list[Run], mode: str) -> float:
    """The p with the highest mean validation accuracy (lowest mean validation error) under ``mode``."""
    by_p: dict[float, list[float]] = {}
    for run in runs:
        if mode in run.errors:
            by_p.setdefault(run.p, []).append(run.errors[mode]["val"])
    return min(by_p, key=lambda p: statistics.mean(by_p[p]))


def dropout_arm(sweep: Path) -> Arm:
    """Dropout at its p chosen on validation, from the records, by the report's own rule."""
    runs, _ = scan([sweep])
    frame = add_labels(runs_frame(runs))
    best = best_p_table(frame, "error", "test").numbers
    return next(a for a in arms(frame, best, "error", "test") if a.label == "dropout")


def verdict_table(runs: list[Run], sweep: Path) -> str:
    dropout = dropout_arm(sweep)
    rows = []
    for mode in [m for m in MODES if any(m in r.errors for r in runs)]:
        p = chosen_p(runs, mode)
        b = arm(runs, f"DropConnect, {LABELS[mode]}", p, mode)
        if len(b.values) >= 2:
            rows.append(compare(dropout, b) | {"label": b.name})
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame["p"])
    lines = [
        f"| comparison (A − B, test error; A = {dropout.name}) | Δ [95% CI] pp | Holm p | verdict | n |",
        "|---|---|---|---|---|",
    ]
    for _, row in frame.iterrows():
        judged = verdict(row["ci_low"], row["ci_high"], row["p_holm"], row["diff_mean"], lower_is_better=True)
        cells = [
            f"dropout − {row['label']}",
            interval_text(row),
            f"{row['p_holm']:.3f}",
            judged,
            str(row["n"]),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--sampled-p", type=float, nargs="*", default=[], help="the p's to sample at")
    parser.add_argument("--samples", type=int, default=1000, help="Z, the sampled mode's draws per unit")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    records = finished_runs(args.sweep)
    cache: dict = {}
    runs = []
    for run_dir, record in records:
        if record["config"]["reg"] != "dropconnect":
            continue
        p = float(record["config"]["p"])
        modes = MODES if any(abs(p - q) < 1e-9 for q in args.sampled_p) else MODES[:2]
        runs.append(evaluate(run_dir, record, modes, args.samples, cache))
        errors = ", ".join(f"{m} {runs[-1].errors[m]['test']:.2f}%" for m in modes)
        print(f"p={p:g} seed={runs[-1].seed}: {errors}")
    text = (
        f"# DropConnect's Gaussian rows from saved weights (`{args.sweep}`)\n\n"
        f"Written by `python scripts/gaussian_rows.py {args.sweep} --sampled-p "
        f"{' '.join(f'{p:g}' for p in args.sampled_p)} --samples {args.samples}`; host CPU "
        f"threads {torch.get_num_threads()}. Every mean-inference test error equals the run's record.\n\n"
        f"## Every run\n\n{runs_table(runs)}\n## Closed form against mean and sampled, per p\n\n"
        f"{per_p_table(runs)}\n## Dropout against DropConnect at each mode's p chosen on validation\n\n"
        f"{verdict_table(runs, args.sweep)}"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
