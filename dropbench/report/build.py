"""Assemble the report: read the runs, make each (dataset, model) group's tables and figures,
write them to the output folder and return the whole report as Markdown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from dropbench.errors import DropbenchError
from dropbench.report import conditions, dedupe, ood, paired, plots, tables
from dropbench.report.labels import add_labels, format_value
from dropbench.report.render import markdown, save_figure, write_table, write_text
from dropbench.report.runs import GAP, Run, in_shape, runs_frame, scan
from dropbench.tasks import Reconstruction

RUNS_FILE = "runs.csv"
REPORT_FILE = "report.md"


@dataclass(frozen=True)
class Options:
    """What to report: ``metric`` is error or acc (both in %), on the ``split`` test or test_mc;
    ``tune``: settings chosen on validation together with p (:mod:`dropbench.report.labels`);
    ``by``: settings that split each (dataset, model) group into one group per value, each with
    its own tables, best p and paired comparisons (a finding's condition, such as
    ``dataset.train_size``, rather than a method)."""

    metric: str = "error"
    split: str = "test"
    tune: tuple[str, ...] = ()
    by: tuple[str, ...] = ()


@dataclass
class Output:
    """The Markdown so far and the files written."""

    folder: Path
    sections: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def runs_count(n: int) -> str:
    return f"{n} finished run" + ("" if n == 1 else "s")


def group_tables(frame: pd.DataFrame, options: Options) -> list[tables.Table]:
    """Main, best-p, gap (classifiers), (when any run has test_mc/*) MC dropout and (with two
    rows or more) paired comparison tables of one group."""
    best = tables.best_p_table(frame, options.metric, options.split)
    made = [tables.main_table(frame, options.metric, options.split), best]
    if GAP in frame and frame[GAP].notna().any():  # classifiers
        made.append(tables.gap_table(frame, options.split))
    optional = [
        tables.mc_table(frame),
        paired.paired_table(frame, best.numbers, options.metric, options.split),
        ood.ood_table(frame, best.numbers),
        ood.ood_paired_table(frame, best.numbers),
    ]
    return made + [table for table in optional if table is not None]


def group_figures(
    frame: pd.DataFrame, made: list[tables.Table], runs: dict[str, Run], title: str, options: Options
):
    """(file stem, figure) pairs of one group; figures with nothing to draw are skipped."""
    main, best = made[0], made[1].numbers
    palette = plots.colors(list(pd.unique(frame["label"])))
    name = tables.metric_name(options.metric, options.split)
    heading = f"{options.split} {options.metric} ({tables.UNITS[options.metric]})"
    histories = {folder: run.record.get("history") or [] for folder, run in runs.items()}
    bins = {folder: run.record.get("reliability") or {} for folder, run in runs.items()}
    mc_curves = {folder: run.record.get("mc_curve") or {} for folder, run in runs.items()}
    shape = in_shape(runs[frame["run"].iloc[0]])
    figures = {
        f"{options.metric}_vs_p": plots.metric_vs_p(
            main.numbers, name, heading, f"{title}: {heading} vs p", palette
        ),
        "curves": plots.curves(frame, best, histories, title, palette),
        "weights": plots.weight_maps(frame, best, shape, title),
        "reconstructions": plots.reconstructions(frame, best, title),
        "reliability": plots.reliability(frame, best, bins, title, palette),
        "mc_curve": plots.mc_curve(frame, best, mc_curves, title, palette),
    }
    compared = next((table.numbers for table in made if table.name == "paired"), None)
    if compared is not None:
        heading = f"{options.split} {options.metric}"
        unit = paired.DIFF_UNITS[options.metric][0]
        figures["paired"] = plots.forest(
            compared, heading, f"{title}: paired differences at best p", palette, unit
        )
    return [(stem, figure) for stem, figure in figures.items() if figure is not None]


def group_options(frame: pd.DataFrame, options: Options) -> Options:
    """A reconstruction group is reported by its per-pixel MSE, whatever ``--metric`` says."""
    if (frame["task"] == Reconstruction.name).all():
        return replace(options, metric="mse")
    return options


def headline_column(options: Options) -> str:
    return f"{options.split}/{tables.recorded_metric(options.metric)}"


def group_names(frame: pd.DataFrame, by: tuple[str, ...]) -> tuple[str, str]:
    """The title ("mnist / mlp / train_size=100") and file prefix ("mnist_mlp_train_size100") of
    a group: its dataset, model and ``--by`` values."""
    first = frame.iloc[0]
    conditions = [f"{key.split('.')[-1]}={format_value(first[key])}" for key in by]
    title = " / ".join([str(first["dataset"]), str(first["model"]), *conditions])
    prefix = "_".join([str(first["dataset"]), str(first["model"]), *(c.replace("=", "") for c in conditions)])
    return title, re.sub(r"[^A-Za-z0-9_.-]", "-", prefix)


def report_group(
    frame: pd.DataFrame, runs: dict[str, Run], options: Options, out: Output
) -> tuple[pd.DataFrame, list[tables.Table]]:
    """Write one (dataset, model, --by values) group's tables and figures; returns its runs with
    their labels, and the tables."""
    frame = add_labels(frame, options.tune)
    dedupe.check_one_run_per_seed(frame, runs)
    title, prefix = group_names(frame, options.by)
    out.sections.append(f"## {title} ({runs_count(len(frame))})\n")
    options = group_options(frame, options)
    measured = frame[tables.column(frame, headline_column(options)).notna()]
    if measured.empty:  # e.g. --split test_mc and this group ran without MC dropout
        out.sections.append(f"No run of this group has `{options.split}/*` metrics.\n")
        return frame, []
    made = group_tables(measured, options)
    for table in made:
        out.files += write_table(table, out.folder / f"{prefix}_{table.name}", f"{title}: {table.note}")
        out.sections.append(markdown(table))
    for stem, figure in group_figures(measured, made, runs, title, options):
        out.files += save_figure(figure, out.folder / f"{prefix}_{stem}")
    return frame, made


def report_conditions(
    reported: list[tuple[tuple, pd.DataFrame, list[tables.Table]]], options: Options, out: Output
) -> None:
    """With one ``--by`` key: each (dataset, model)'s paired comparisons of every condition side
    by side (:mod:`dropbench.report.conditions`)."""
    if len(options.by) != 1:
        return
    found: dict[str, tuple[str, str, list]] = {}  # prefix -> (title, metric, [(value, paired table)])
    for (_, _, value), frame, made in reported:
        compared = next((table for table in made if table.name == "paired"), None)
        if compared is not None:
            title, prefix = group_names(frame, ())  # the (dataset, model) the conditions share
            metric = group_options(frame, options).metric
            found.setdefault(prefix, (title, metric, []))[2].append((value, compared))
    for prefix, (title, metric, paired_tables) in found.items():
        heading, unit = f"{options.split} {metric}", paired.DIFF_UNITS[metric][0]
        made = conditions.by_outputs(paired_tables, options.by[0], heading, unit, title)
        if made is None:
            continue
        table, figure = made
        stem = out.folder / f"{prefix}_{table.name}"
        out.files += write_table(table, stem, f"{title}: {table.note}")
        out.sections.append(f"## {title}: every {conditions.short_key(options.by[0])}\n")
        out.sections.append(markdown(table))
        if figure is not None:
            out.files += save_figure(figure, stem)


IDENTITY = ["run", "dataset", "model", "reg", "label", "family", "tuned"]


def column_kind(name: str) -> int:
    """Sort key of runs.csv's columns: identity, config knobs, group settings (``model.hidden``,
    ``reg.mask``), then metrics (``test/acc``) and what is derived from them."""
    if name in IDENTITY:
        return 0
    if "/" in name or name in ("best_epoch", GAP):
        return 3
    return 2 if "." in name else 1


def write_runs(labeled: list[pd.DataFrame], out: Output) -> None:
    """``runs.csv``: every finished run, one row each, its numbers exactly as recorded (the
    summary tables' CSVs are rounded to 10 significant digits; this is the data behind them)."""
    frame = pd.concat(labeled)
    if (frame["family"] == frame["label"]).all():  # nothing tuned: the label says it all
        frame = frame.drop(columns=["family", "tuned"])
    identity = [c for c in IDENTITY if c in frame]
    columns = identity + sorted((c for c in frame.columns if c not in IDENTITY), key=column_kind)
    out.files.append(write_text(out.folder / RUNS_FILE, frame[columns].to_csv(index=False)))


def check_settings(frame: pd.DataFrame, options: Options) -> None:
    """Every ``--tune`` and ``--by`` key is a setting some run recorded, and none is both (one
    line naming the bad one otherwise)."""
    settings = sorted(c for c in frame.columns if column_kind(c) in (1, 2) and c not in ("p", "seed"))
    for flag, keys in (("--tune", options.tune), ("--by", options.by)):
        for key in keys:
            if key not in settings:
                raise DropbenchError(
                    f"{flag} {key!r} is not a setting of these runs; choose from {', '.join(settings)}"
                )
    both = sorted(set(options.tune) & set(options.by))
    if both:
        raise DropbenchError(f"{both[0]} is given to both --tune and --by; a setting is one or the other")


def make_report(paths: list[Path], folder: Path | None, options: Options) -> Output:
    """Read every run under ``paths`` and write the report into ``folder`` (default: the first
    path's ``report/``). Nothing is written when there is nothing to report."""
    finished, problems = scan(paths)
    finished, merges = dedupe.merge_copies(finished)
    frame = runs_frame(finished)
    check_settings(frame, options)
    where = ", ".join(map(str, paths))
    has = [tables.column(frame, f"{options.split}/{m}").notna() for m in ("acc", "mse")]
    if not (has[0] | has[1]).any():
        raise DropbenchError(f"no finished run under {where} has {options.split}/* metrics")
    out = Output(folder if folder is not None else paths[0] / "report")
    out.folder.mkdir(parents=True, exist_ok=True)
    merged = sum(len(merge.copies) for merge in merges)
    copies = f" ({merged} more cop{'y' if merged == 1 else 'ies'} of them merged)" if merged else ""
    out.sections.append(f"# dropbench report\n\n{runs_count(len(finished))} under {where}{copies}\n")
    runs = {str(run.folder): run for run in finished}
    reported = [
        (values, *report_group(group, runs, options, out))
        for values, group in frame.groupby(["dataset", "model", *options.by], dropna=False)
    ]
    write_runs([labeled for _, labeled, _ in reported], out)
    report_conditions(reported, options, out)
    listed = ([dedupe.merges_table(merges)] if merges else []) + (
        [tables.problems_table(problems)] if problems else []
    )
    for table in listed:
        out.files += write_table(table, out.folder / table.name, table.note)
        out.sections.append(markdown(table, level=2))
    out.files.append(write_text(out.folder / REPORT_FILE, "\n".join(out.sections)))
    return out
