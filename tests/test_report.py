"""``dropbench report`` on fake run folders whose numbers are known: every table cell is checked
against statistics recomputed here, independently, from the metrics.json files themselves."""

from __future__ import annotations

import errno
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dropbench.cli import main
from dropbench.report import plots
from dropbench.report.build import Options, group_tables, make_report
from dropbench.report.labels import add_labels
from dropbench.report.runs import runs_frame, scan
from dropbench.weightmap import first_layer_weight, roughness, spread, weight_grid

SEEDS = (0, 1, 2)
OFFSETS = (0.001, -0.002, 0.0035)  # added to the accuracies per seed, so every cell has a spread
DEFAULTS = {
    "none": {},
    "l2": {},
    "dropout": {"input_p": 0.0, "form": "inverted"},
    "dropconnect": {"mask": "example", "inference": "mean", "samples": 1000},
}
# (reg, p, reg settings, wd, seeds, test acc, val acc). Dropout: validation prefers p=0.2 and
# test prefers p=0.5, so a best p chosen by test would differ from one chosen by validation.
GRID = [
    ("none", None, {}, 0.0, SEEDS, 0.970, 0.972),
    ("l2", None, {}, 5e-4, SEEDS, 0.973, 0.975),
    ("dropout", 0.2, {}, 0.0, SEEDS, 0.975, 0.990),
    ("dropout", 0.5, {}, 0.0, SEEDS, 0.981, 0.985),
    ("dropout", 0.8, {}, 0.0, (0,), 0.960, 0.961),
    ("dropconnect", 0.2, {}, 0.0, SEEDS, 0.976, 0.977),
    ("dropconnect", 0.5, {}, 0.0, SEEDS, 0.979, 0.981),
    ("dropconnect", 0.5, {"mask": "batch"}, 0.0, SEEDS, 0.978, 0.983),
]
#: the row label each (reg, settings) must get: settings that vary are named, l2 shows its wd
LABELS = {
    "none": ("none", {}),
    "l2 (wd=0.0005)": ("l2", {}),
    "dropout": ("dropout", {}),
    "dropconnect (mask=example)": ("dropconnect", {"mask": "example"}),
    "dropconnect (mask=batch)": ("dropconnect", {"mask": "batch"}),
}


def weights(seed: int) -> dict[str, torch.Tensor]:
    """A tiny MLP state dict: 16 hidden units reading 1x28x28 images."""
    g = torch.Generator().manual_seed(seed)
    return {
        "fc.0.weight": torch.randn(16, 784, generator=g),
        "fc.0.bias": torch.zeros(16),
        "fc.1.weight": torch.randn(10, 16, generator=g),
    }


def history(train: float, val: float) -> list[dict]:
    """Three epochs converging to ``train`` and ``val`` accuracy."""
    return [
        {
            "epoch": e,
            **{"train/loss": 1.0 / e, "train/acc": train - 0.1 / e, "epoch_time_s": 1.0},
            **{"val/loss": 1.2 / e, "val/acc": val - 0.05 * (3 - e), "val/nll": 1.2 / e, "val/ece": 0.02},
        }
        for e in (1, 2, 3)
    ]


def final(reg: str, seed: int, train: float, val: float, test: float) -> dict:
    """Last-epoch train/val metrics, test metrics, and MC dropout ones for dropout runs."""
    metrics = {"train/loss": 0.3, "train/acc": train, "val/loss": 0.4, "val/acc": val}
    metrics |= {
        "test/loss": 0.1,
        "test/acc": test,
        "test/nll": 0.1 + seed / 100,
        "test/ece": 0.01 + seed / 1000,
    }
    metrics |= {"test_last/loss": 0.1, "test_last/acc": test - 0.001}
    if reg == "dropout":
        metrics |= {"test_mc/acc": test + 0.002, "test_mc/nll": 0.09, "test_mc/ece": 0.005 + seed / 1000}
    return metrics


def record(reg: str, p: float | None, settings: dict, wd: float, seed: int, test: float, val: float) -> dict:
    """A finished run's metrics.json in dropbench's schema."""
    test, val = test + OFFSETS[seed], val + OFFSETS[seed]
    train = val + 0.01
    config = {"dataset": "mnist", "model": "mlp", "reg": reg, "optimizer": "adam", "schedule": "cosine"}
    config |= {"p": p, "wd": wd, "max_norm": None, "seed": seed, "epochs": 3, "batch_size": 128, "lr": 1e-3}
    reg_node = {**DEFAULTS[reg], **settings, "layers": {"drop": {"p": p}}, "wd": wd, "folder": reg}
    return {
        "status": "finished",
        "config": config,
        "resolved_config": {**config, "reg": reg_node | {"uses_p": p is not None}},
        "data": {"origin": "fake", "shape": [1, 28, 28], "classes": 10, "train": 100, "val": 20, "test": 20},
        "history": history(train, val),
        "best": {"epoch": 3, "val/loss": 0.4, "val/acc": val},
        "final": final(reg, seed, train, val, test),
        **({"reliability": reliability(test), "mc_curve": mc_curve(test, seed)} if reg == "dropout" else {}),
    }


CURVE_T = [1, 2, 3, 5, 10]


def mc_curve(test: float, seed: int) -> dict:
    """MC dropout after t of T = 10 passes, ending at ``final``'s test_mc/* (see :func:`final`)."""
    gone = [1 - t / 10 for t in CURVE_T]  # 0 at t = T
    return {
        "t": CURVE_T,
        "test_mc/acc": [test + 0.002 - 0.02 * g for g in gone],
        "test_mc/nll": [0.09 + 0.1 * g for g in gone],
        "test_mc/ece": [0.005 + seed / 1000 + 0.01 * g for g in gone],
    }


def reliability(acc: float) -> dict:
    """Reliability bins of the two test splits: all 20 examples in the two last of 15 bins."""

    def bins(confidence: list[float]) -> dict:
        return {"count": [0] * 13 + [10, 10], "accuracy": [None] * 13 + [acc, acc], "confidence": confidence}

    return {"test": bins([None] * 13 + [0.9, 0.99]), "test_mc": bins([None] * 13 + [0.88, 0.97])}


def write_run(folder: Path, payload: dict | str, state: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "metrics.json").write_text(payload if isinstance(payload, str) else json.dumps(payload))
    if state is not None:
        torch.save(state, folder / "weights.pt")
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A sweep folder with the grid above, plus one run each diverged, interrupted, corrupt, unfinished."""
    root = tmp_path_factory.mktemp("results")
    sweep = root / "sweeps" / "2026-01-01_00-00-00"
    job = 0
    for reg, p, settings, wd, seeds, test, val in GRID:
        for seed in seeds:
            payload = record(reg, p, settings, wd, seed, test, val)
            write_run(sweep / f"{job}_mnist_mlp_{reg}_p{p}_seed{seed}", payload, weights(seed))
            job += 1
    diverged = record("dropout", 0.5, {}, 0.0, 0, 0.1, 0.1)
    diverged |= {"status": "diverged", "final": {}, "diverged": {"epoch": 2, "metric": "train/loss"}}
    write_run(sweep / "90_diverged", diverged)
    write_run(
        sweep / "91_interrupted", record("dropout", 0.5, {}, 0.0, 1, 0.1, 0.1) | {"status": "interrupted"}
    )
    write_run(sweep / "92_corrupt", '{"status": "finished", "config": {')
    (root / "runs" / "93_unfinished" / ".hydra").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def report(results):
    """The report of ``results`` made in this process (the default output folder, results/report)."""
    return make_report([results], None, Options())


def finished_records(results: Path) -> dict[str, dict]:
    """Every finished run's metrics.json under ``results``, by folder, read without the report's code."""
    found = {}
    for path in results.rglob("metrics.json"):
        try:
            run = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if run["status"] == "finished":
            found[str(path.parent)] = run
    return found


def expected(results: Path, reg: str, p: float | None, value, **settings) -> list[float]:
    """``value(record)`` of every finished run of (reg, settings, p)."""
    return [
        value(run)
        for run in finished_records(results).values()
        if run["config"]["reg"] == reg
        and run["config"]["p"] == p
        and all(run["resolved_config"]["reg"][key] == setting for key, setting in settings.items())
    ]


def error_pct(run: dict) -> float:
    """Test error in %, the report's default metric."""
    return 100 * (1 - run["final"]["test/acc"])


def markdown_rows(path: Path) -> list[list[str]]:
    """The cells of a Markdown pipe table, header first (the separator row included)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_error_table_is_mean_and_sample_std_over_seeds(results, report):
    numbers = pd.read_csv(report.folder / "mnist_mlp_main.csv")
    assert len(numbers) == len(GRID)
    for _, row in numbers.iterrows():
        reg, settings = LABELS[row["label"]]
        errors = expected(results, reg, None if pd.isna(row["p"]) else row["p"], error_pct, **settings)
        assert row["n"] == len(errors)
        assert row["test/error_mean"] == pytest.approx(statistics.mean(errors))
        if len(errors) > 1:
            assert row["test/error_std"] == pytest.approx(statistics.stdev(errors))  # sample std, ddof=1
        else:
            assert pd.isna(row["test/error_std"])


def test_markdown_cells_show_mean_std_and_n(results, report):
    markdown = (report.folder / "mnist_mlp_main.md").read_text()
    errors = expected(results, "dropout", 0.5, error_pct)
    assert f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f} (n=3)" in markdown
    single = expected(results, "dropout", 0.8, error_pct)
    assert f"| {single[0]:.2f} (n=1) " in markdown  # one seed: no ± at all


def test_regs_without_p_get_one_row_and_one_column(report):
    rows = markdown_rows(report.folder / "mnist_mlp_main.md")
    assert rows[0] == ["regularizer", "—", "p=0.2", "p=0.5", "p=0.8"]
    none = [row for row in rows if row[0] == "none"]
    assert len(none) == 1 and none[0][1].endswith("(n=3)") and none[0][2:] == ["", "", ""]


def test_labels_name_varying_settings_and_l2_strength(report):
    labels = set(pd.read_csv(report.folder / "runs.csv")["label"])
    assert labels == set(LABELS)  # inference, samples, form, folder, uses_p never vary: not named


def test_labels_skip_settings_that_follow_p_and_name_varying_setup():
    frame = pd.DataFrame(
        {
            **{"reg": "variational", "p": [0.2, 0.5, 0.5], "seed": 0, "wd": 0.0, "max_norm": None},
            **{"lr": [1e-3, 1e-3, 1e-2], "reg.p_input": [0.2, 0.5, 0.5], "reg.p_hidden": [0.2, 0.5, 0.0]},
            **{"model.hidden": ["[8]", "[8]", "[16]"], "dataset.augment": False},
        }
    )
    labels = add_labels(frame)["label"].sort_index().tolist()  # p_input is ${p}: p's column says it
    assert labels == [
        "variational (p_hidden=0.2, lr=0.001, model.hidden=[8])",
        "variational (p_hidden=0.5, lr=0.001, model.hidden=[8])",
        "variational (p_hidden=0, lr=0.01, model.hidden=[16])",
    ]


def test_best_p_is_chosen_by_validation_not_test(results, report):
    best = pd.read_csv(report.folder / "mnist_mlp_best_p.csv").set_index("label")
    val = {
        p: statistics.mean(expected(results, "dropout", p, lambda r: r["best"]["val/acc"]))
        for p in (0.2, 0.5)
    }
    test = {p: statistics.mean(expected(results, "dropout", p, error_pct)) for p in (0.2, 0.5)}
    assert max(val, key=val.get) == 0.2 and min(test, key=test.get) == 0.5  # the two criteria disagree
    assert best.loc["dropout", "p"] == 0.2 and best.loc["dropout", "n"] == 3
    assert best.loc["dropout", "test/error_mean"] == pytest.approx(test[0.2])
    assert pd.isna(best.loc["none", "p"])


def test_gap_is_train_minus_test_accuracy_in_points(results, report):
    gap = pd.read_csv(report.folder / "mnist_mlp_gap.csv").set_index("label")
    gaps = expected(results, "l2", None, lambda r: 100 * (r["final"]["train/acc"] - r["final"]["test/acc"]))
    assert gap.loc["l2 (wd=0.0005)", "gap/test_mean"] == pytest.approx(statistics.mean(gaps))
    assert gap.loc["l2 (wd=0.0005)", "gap/test_std"] == pytest.approx(statistics.stdev(gaps))
    runs = pd.read_csv(report.folder / "runs.csv")
    assert "gap" not in runs  # a fraction there once: the unit is in the name now
    l2 = runs[runs["reg"] == "l2"]
    assert sorted(l2["gap_pp"]) == pytest.approx(sorted(gaps))  # in the tables' unit


def test_mc_table_pairs_deterministic_and_mc_metrics(results, report):
    mc = pd.read_csv(report.folder / "mnist_mlp_mc.csv")
    assert set(mc["label"]) == {"dropout"} and list(mc["n"]) == [3, 3, 1]
    row = mc[mc["p"] == 0.5].iloc[0]
    mc_acc = expected(results, "dropout", 0.5, lambda r: 100 * r["final"]["test_mc/acc"])
    ece = expected(results, "dropout", 0.5, lambda r: 100 * r["final"]["test/ece"])
    assert row["test_mc/acc_mean"] == pytest.approx(statistics.mean(mc_acc))
    assert row["test/ece_mean"] == pytest.approx(statistics.mean(ece))


def group_figure_inputs(root: Path, model: str = "mlp") -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """The mnist / ``model`` group's labelled runs, best-p rows and recorded MC curves, as the
    report has them."""
    finished, _ = scan([root])
    frame = runs_frame(finished)
    frame = add_labels(frame[frame["model"] == model])
    best = group_tables(frame, Options())[1].numbers
    return frame, best, {str(run.folder): run.record.get("mc_curve") for run in finished}


def test_mc_curve_figure_draws_the_mean_over_seeds_at_best_p_and_weight_scaling_dashed(results):
    frame, best, curves = group_figure_inputs(results)
    figure = plots.mc_curve(frame, best, curves, "mnist / mlp", plots.colors(list(pd.unique(frame["label"]))))
    error_ax, nll_ax, ece_ax = figure.axes[:3]
    assert error_ax.get_xscale() == "log" and "%" in error_ax.get_ylabel() and "nats" in nll_ax.get_ylabel()
    records = expected(results, "dropout", 0.2, lambda r: r)  # best p by validation
    mc, ws = error_ax.lines[:2]  # only dropout recorded curves: its line, then its dashed line
    assert list(mc.get_xdata()) == CURVE_T
    for i in range(len(CURVE_T)):
        errors = [100 * (1 - r["mc_curve"]["test_mc/acc"][i]) for r in records]
        assert mc.get_ydata()[i] == pytest.approx(statistics.mean(errors))
    assert mc.get_ydata()[-1] == pytest.approx(
        statistics.mean(100 * (1 - r["final"]["test_mc/acc"]) for r in records)
    )
    assert ws.get_linestyle() == "--" and ws.get_color() == mc.get_color()
    assert ws.get_ydata()[0] == pytest.approx(statistics.mean(error_pct(r) for r in records))
    ece = [100 * r["mc_curve"]["test_mc/ece"][0] for r in records]
    assert ece_ax.lines[0].get_ydata()[0] == pytest.approx(statistics.mean(ece))
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[0] == "dropout, p=0.2 (n=3)" and "weight scaling, mean over seeds" in legend


def test_mc_curve_figure_names_gaussian_inference_and_is_skipped_without_curves(tmp_path):
    for seed in (0, 1):
        gaussian = record("dropconnect", 0.5, {"inference": "gaussian"}, 0.0, seed, 0.98, 0.98)
        gaussian["mc_curve"] = mc_curve(0.98, seed)
        write_run(tmp_path / "runs" / f"gaussian_{seed}", gaussian)
        plain = record("dropout", 0.5, {}, 0.0, seed, 0.97, 0.97)
        plain["config"]["model"] = "cnn"
        del plain["mc_curve"]  # no curve recorded: e.g. a run from before mc_curve
        write_run(tmp_path / "runs" / f"plain_{seed}", plain)
    made = make_report([tmp_path / "runs"], tmp_path / "report", Options())
    assert (made.folder / "mnist_mlp_mc_curve.png").is_file()
    assert (made.folder / "mnist_cnn_reliability.png").is_file()  # MC dropout without its curve
    assert not list(made.folder.glob("mnist_cnn_mc_curve.*"))
    frame, best, curves = group_figure_inputs(tmp_path / "runs")
    figure = plots.mc_curve(frame, best, curves, "mnist / mlp", plots.colors(["dropconnect"]))
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[0] == "dropconnect, p=0.5 (n=2); dashed: Gaussian inference (moment matching)"


def test_runs_that_did_not_finish_are_listed_and_left_out(report):
    left_out = pd.read_csv(report.folder / "excluded.csv")
    statuses = dict(zip(left_out["run"].map(lambda run: Path(run).name), left_out["status"], strict=True))
    assert statuses == {
        "90_diverged": "diverged",
        "91_interrupted": "interrupted",
        "92_corrupt": "corrupt",
        "93_unfinished": "unfinished",
    }
    assert "train/loss not finite at epoch 2" in left_out["reason"].tolist()
    runs = pd.read_csv(report.folder / "runs.csv")
    assert not runs["run"].str.contains("diverged|interrupted|corrupt|unfinished").any()
    assert "## runs left out" in (report.folder / "report.md").read_text()


def test_files_exist_and_csv_round_trips(results, report):
    for stem in ("main", "best_p", "gap", "mc"):
        for ext in ("md", "csv", "tex"):
            assert (report.folder / f"mnist_mlp_{stem}.{ext}").stat().st_size > 0
    for stem in ("error_vs_p", "curves", "weights", "reliability", "mc_curve"):
        assert (report.folder / f"mnist_mlp_{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (report.folder / f"mnist_mlp_{stem}.svg").read_text()
    tex = (report.folder / "mnist_mlp_main.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and "±" not in tex and r"test error in \%" in tex
    runs = pd.read_csv(report.folder / "runs.csv").set_index("run")
    records = finished_records(results)
    assert set(runs.index) == set(records)
    for folder, run in records.items():
        assert runs.loc[folder, "test/acc"] == run["final"]["test/acc"]
        assert runs.loc[folder, "val/acc_best"] == run["best"]["val/acc"]
        assert runs.loc[folder, "seed"] == run["config"]["seed"]
    assert not list(report.folder.glob(".*tmp"))  # no temporary file left behind


def test_weight_grid_tiles_each_unit_scaled_on_its_own():
    weight = weights(0)["fc.0.weight"]
    grid = weight_grid(weight, (1, 28, 28), units=100)
    assert grid.shape == (3, 4 * 29 + 1, 4 * 29 + 1)  # 16 units: 4x4 tiles of 28 px, 1 px borders
    assert grid.min() >= 0 and grid.max() <= 1
    tile = grid[0, 30:58, 59:87]  # row 1, column 2 (each tile after a 1 px border): unit 6
    unit = weight[6].reshape(28, 28)
    assert torch.allclose(tile, (unit - unit.min()) / (unit.max() - unit.min()), atol=1e-6)
    assert weight_grid(torch.randn(300, 3072), (3, 32, 32)).shape == (3, 10 * 33 + 1, 10 * 33 + 1)


def test_roughness_tells_noise_from_strokes_and_ignores_scale():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(50, 784, generator=gen)
    rows = torch.linspace(-1, 1, 28)
    blob = torch.exp(-(rows[:, None] ** 2 + rows[None, :] ** 2) / 0.1).reshape(1, 784)
    checker = ((torch.arange(28)[:, None] + torch.arange(28)[None, :]) % 2 * 2 - 1.0).reshape(1, 784)
    assert roughness(noise, (1, 28, 28)).median() == pytest.approx(1.0, abs=0.05)
    assert roughness(blob, (1, 28, 28)).item() < 0.05
    assert roughness(checker, (1, 28, 28)).item() == pytest.approx(2.0, abs=0.1)
    assert torch.allclose(roughness(noise * 1e-3, (1, 28, 28)), roughness(noise, (1, 28, 28)))
    assert roughness(torch.randn(4, 3072, generator=gen), (3, 32, 32)).shape == (4,)


def test_spread_is_small_for_a_localized_unit_and_that_of_a_uniform_image_for_noise():
    gen = torch.Generator().manual_seed(0)
    uniform = torch.ones(1, 784)
    dot = torch.zeros(1, 784)
    dot[0, 14 * 28 + 3] = 5.0  # one pixel, off centre: no spread at all
    rows = torch.arange(28.0)
    blob = torch.exp(-((rows[:, None] - 5) ** 2 + (rows[None, :] - 20) ** 2) / 2.0).reshape(1, 784)
    expected = ((28**2 + 28**2 - 2) / 12) ** 0.5  # the RMS distance over a uniform 28 x 28 square
    assert spread(uniform, (1, 28, 28)).item() == pytest.approx(expected, rel=1e-5)
    assert spread(dot, (1, 28, 28)).item() == pytest.approx(0.0, abs=1e-4)
    assert spread(blob, (1, 28, 28)).item() == pytest.approx(1.0, abs=0.01)  # 2 sigma^2 = 2 in energy
    noise = torch.randn(200, 784, generator=gen)
    assert spread(noise, (1, 28, 28)).median() == pytest.approx(expected, rel=0.03)


def test_first_layer_weight_finds_the_input_layer_or_none():
    state = weights(0)
    assert first_layer_weight(state, (1, 28, 28)) is state["fc.0.weight"]
    cnn = {"conv.weight": torch.zeros(8, 1, 3, 3), "fc.weight": torch.zeros(10, 72)}
    assert first_layer_weight(cnn, (1, 28, 28)) is None


def test_cli_prints_the_markdown_table(results, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "dropbench", "report", str(results), "--out", str(out), "--metric", "acc"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    accs = expected(results, "dropout", 0.5, lambda run: 100 * run["final"]["test/acc"])
    assert "### test acc (%)" in done.stdout and "| dropout " in done.stdout
    assert f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f} (n=3)" in done.stdout
    assert (out / "report.md").read_text().strip() == done.stdout.strip()


#: arguments after ``report`` (the first, if any, a folder in tmp_path) and what the error must say
BAD_INPUT = {
    "missing": (["nowhere"], "nowhere' does not exist"),
    "empty": (["empty"], "no finished run under"),
    "only_problems": (["problems"], "(1 corrupt)"),
    "no_paths": ([], "required: PATH"),
    "bad_metric": (["problems", "--metric", "loss"], "invalid choice: 'loss' (choose from 'error', 'acc')"),
    "no_mc_metrics": (["finished", "--split", "test_mc"], "has test_mc/* metrics"),
    "out_is_a_file": (["finished", "--out", "a_file"], "is a file, not a folder"),
    "out_unmakeable": (["finished", "--out", "a_file/sub"], "a_file is not a writable folder"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_status_2(case, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_run(tmp_path / "problems" / "run", "{")
    write_run(tmp_path / "finished" / "run", record("none", None, {}, 0.0, 0, 0.9, 0.9))  # no test_mc/*
    (tmp_path / "a_file").write_text("")
    words, message = BAD_INPUT[case]
    arguments = [str(tmp_path / w) if i == 0 or w.startswith("a_file") else w for i, w in enumerate(words)]
    try:
        status = main(["report", *arguments])
    except SystemExit as stop:  # argparse's errors leave this way
        status = stop.code
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("dropbench: error: ") and message in error[0]
    assert not list(tmp_path.rglob("report"))  # nothing written


def test_cli_error_from_a_subprocess(tmp_path):
    missing = tmp_path / "nowhere"
    done = subprocess.run(
        [sys.executable, "-m", "dropbench", "report", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"dropbench: error: {str(missing)!r} does not exist"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: [r], "status None"),
        (lambda r: r | {"config": r["config"] | {"p": "high"}}, "config/p = 'high', not a number"),
        (lambda r: r | {"config": r["config"] | {"seed": 1.5}}, "config/seed = 1.5, not a number"),
        (lambda r: r | {"final": r["final"] | {"test/acc": "x"}}, "final/test/acc = 'x', not a number"),
    ],
)
def test_a_record_of_the_wrong_shape_is_listed_as_corrupt_with_its_reason(tmp_path, change, reason):
    from dropbench.report.runs import Problem, read_run

    folder = write_run(tmp_path / "run", change(record("dropout", 0.5, {}, 0.0, 0, 0.9, 0.9)))
    found = read_run(folder)
    assert isinstance(found, Problem) and found.status == "corrupt" and reason in found.reason


def test_a_full_disk_is_one_line_naming_the_file(results, tmp_path, monkeypatch, capsys):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    assert main(["report", str(results), "--out", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"dropbench: error: cannot write {tmp_path / 'out'}/")
    assert line.endswith(": no space left on device")
