"""Smoke test of the speed harness: ``scripts/bench.py --quick`` runs end to end on tiny data in
the real file formats and writes well-formed rows (the grid, per-example DropConnect at two p,
one layer's step). It never asserts a speed."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakedata import write_cifar, write_mnist_like

from dropbench.combinations import invalid_pairs

ROOT = Path(__file__).resolve().parent.parent
#: the columns the speed issue asks for
REQUIRED = [
    "kind",
    "model",
    "dataset",
    "reg",
    "mask",
    "device",
    "threads",
    "train_examples",
    "batch_size",
    "epoch_s",
    "samples_per_s",
    "bound_s",
    "ratio_bound",
    "ratio_bound_min",
    "ratio_bound_max",
    "baseline_s",
    "ratio_baseline_speedup",
    "ratio_reg_over_none",
    "ratio_reg_over_dropout",
    "p",
    "step_ms",
    "peak_mem_mib",
    "torch",
]
QUICK_P = {"0.2", "0.5"}  # benchkit.dropconnect.QUICK_P_VALUES, as the CSV writes them
REGS = ["none", "dropout", "dropconnect", "spatial", "variational"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One ``--quick`` run on fake MNIST and CIFAR-10 (420 training images each), shared by the tests."""
    work = tmp_path_factory.mktemp("bench")
    write_mnist_like(work / "data" / "MNIST" / "raw", n_train=420, n_test=40)
    write_cifar(work / "data" / "cifar-10-batches-py", n_train=420, n_test=40)
    env = {**os.environ, "DROPBENCH_DATA": str(work / "data"), "DROPBENCH_CACHE": str(work / "cache")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(work / "out")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, work / "out"


@pytest.fixture(scope="module")
def all_rows(quick) -> list[dict[str, str]]:
    done, out = quick
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "benchmarks.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def rows(all_rows) -> list[dict[str, str]]:
    """The epoch rows: the grid's and the per-p group's."""
    return [r for r in all_rows if r["kind"] in ("grid", "per_p")]


def test_quick_run_writes_the_csv_and_the_markdown(quick):
    done, out = quick
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "benchmarks.csv").is_file()
    assert (out / "benchmarks.md").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_csv_has_every_required_column(all_rows):
    assert all_rows
    assert set(REQUIRED) <= set(all_rows[0])
    assert {r["kind"] for r in all_rows} == {"grid", "per_p", "layer"}


def test_every_ratio_present_is_finite_and_positive(all_rows):
    for row in all_rows:
        for column, value in row.items():
            if column.startswith("ratio_") and value != "":
                assert math.isfinite(float(value)) and float(value) > 0, (row["reg"], column, value)


def test_every_row_has_its_times_device_and_ratios(rows):
    for row in rows:
        assert row["device"] == "cpu" and int(row["threads"]) >= 1
        assert float(row["epoch_s"]) > 0 and float(row["bound_s"]) > 0 and float(row["peak_mem_mib"]) > 0
        assert int(row["train_examples"]) > 0 and int(row["batch_size"]) == 128
        assert row["ratio_bound"] != ""
        if row["kind"] == "grid":  # the per-p group has no reg=none
            assert (row["ratio_reg_over_none"] == "") == (row["reg"] == "none")


def test_quick_grid_covers_every_valid_model_reg_pair(rows):
    measured = {
        (r["model"], r["reg"], r["mask"]) for r in rows if r["dataset"] == "mnist" and r["kind"] == "grid"
    }
    for model in ("mlp", "cnn", "lstm"):
        for reg in REGS:
            if (model, reg) in invalid_pairs():
                assert not any(m == model and g == reg for m, g, _ in measured)
            elif reg == "dropconnect" and model != "lstm":  # the LSTM's weight drop has one mask mode
                assert {(model, reg, "batch"), (model, reg, "example")} <= measured
            else:
                assert any(m == model and g == reg for m, g, _ in measured), (model, reg)


def test_baselines_are_measured_for_mlp_on_mnist_and_cnn_on_cifar(rows):
    with_baseline = {(r["model"], r["dataset"], r["reg"]) for r in rows if r["baseline_s"] != ""}
    assert with_baseline == {("mlp", "mnist", "dropout"), ("cnn", "cifar10", "dropout")}


def test_the_per_p_rows_pair_dropout_and_per_example_dropconnect_at_each_p(rows):
    per_p = [r for r in rows if r["kind"] == "per_p"]
    assert {(r["p"], r["reg"], r["mask"]) for r in per_p} == {
        (p, reg, mask) for p in QUICK_P for reg, mask in (("dropout", ""), ("dropconnect", "example"))
    }
    for row in per_p:
        assert row["model"] == "mlp" and row["dataset"] == "mnist" and row["baseline_s"] == ""
        assert (row["ratio_reg_over_dropout"] != "") == (row["reg"] == "dropconnect")
        assert float(row["epoch_s"]) > 0 and float(row["peak_mem_mib"]) > 0


def test_the_layer_rows_time_every_variant_at_each_p_and_state_peak_memory(all_rows):
    layer = [r for r in all_rows if r["kind"] == "layer"]
    variants = {(r["reg"], r["mask"], r["p"]) for r in layer}
    expected = {("dropout", "", p) for p in QUICK_P} | {
        ("dropconnect", m, p) for m in ("batch", "example") for p in QUICK_P
    }
    assert variants == {("none", "", "")} | expected and len(layer) == len(variants)
    for row in layer:
        assert float(row["step_ms"]) > 0 and float(row["bound_s"]) > 0 and float(row["peak_mem_mib"]) > 0
        assert row["epoch_s"] == "" and int(row["batch_size"]) == 128 and row["ratio_bound"] != ""
        assert (row["ratio_reg_over_dropout"] != "") == (row["reg"] == "dropconnect")
    n_in, n_out = (int(n) for n in layer[0]["model"].split()[1].split("->"))
    naive = 128 * n_in * n_out * 4 / 2**20  # a batch x out x in float32 mask
    for row in layer:
        if row["mask"] == "example":
            assert float(row["peak_mem_mib"]) < naive / 4, row  # never a per-example mask tensor


def test_markdown_lists_the_targets_and_the_extra_measurements(quick):
    _, out = quick
    text = (out / "benchmarks.md").read_text()
    assert "## Targets" in text and "--quick" in text
    for needle in ("GEMM bound", "DataLoader baseline", "DropConnect per example", "variational", "spatial"):
        assert needle in text
    assert "first training step" in text and "joblib" in text
    assert "fresh `dropbench run" in text and "first epoch / reg=dropout's" in text
    assert "## Per-example DropConnect at every p: MLP epoch" in text
    assert "## Per-example DropConnect at every p: one layer" in text
    # 9 targets of the grid and start-up, 6 of per-example DropConnect at every p, the first epoch
    assert text.count("| met |") + text.count("| MISSED |") + text.count("| not measured |") == 16
    assert text.count("| not measured |") >= 4  # --quick measures two of the six p


def gpu_step_check(*args: str) -> list[list[str]]:
    """The table rows ``scripts/gpu_step_check.py --device cpu --quick ARGS`` prints."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_step_check.py"), "--device", "cpu", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_the_gpu_step_check_runs_on_the_cpu_and_prints_a_row_per_model_and_mode():
    """Every model with compile off (both kinds of reference), and the MLP compiled too."""
    rows = gpu_step_check("--modes", "off") + gpu_step_check("--only", "mlp", "--modes", "on")
    assert [(r[0], r[2]) for r in rows] == [("mlp", "off"), ("cnn", "off"), ("lstm", "off"), ("mlp", "on")]
    for model, reg, _, first, step, reference, reference_ms, ratio, target, verdict in rows:
        assert float(step) > 0 and float(reference_ms) > 0 and float(first) >= 0
        assert float(ratio) == pytest.approx(float(step) / float(reference_ms), rel=0.01, abs=0.01)
        assert ("bound" in reference) == (model != "lstm") and verdict in ("met", "MISSED")
        assert reg == ("variational" if model == "lstm" else "dropout")
        assert target == ("<= 2" if model == "lstm" else "<= 3")
