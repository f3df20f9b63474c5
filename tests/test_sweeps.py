"""Sweeps that survive: stable folders, skipped finished runs, resume after Ctrl-C, skipped bad jobs."""

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tinyrun import SMALL_MODEL, TINY, comparable, run_dirs

from dropbench.rundir import NAME_MAX, RunDir, folder_name
from dropbench.sweep import outcome, sweep_plan

MLP = [*SMALL_MODEL["mlp"], *TINY]


def records(results: Path) -> dict[str, dict]:
    """metrics.json of every run below ``results``, keyed by the folder path relative to it."""
    return {
        str(f.parent.relative_to(results)): json.loads(f.read_text()) for f in results.rglob("metrics.json")
    }


def test_sweep_folders_are_stable_and_name_dataset_model_reg_p_and_seed(dropbench, tmp_path):
    done = dropbench("run", "-m", *MLP, "epochs=1", "p=0.1,0.5", "seed=0,1")
    assert done.returncode == 0, done.stderr
    found = sorted(records(tmp_path / "results"))
    overrides = "batch_size=16,dataset.val_size=20,epochs=1,model.hidden=[32]"
    assert found == [
        f"sweeps/default/mnist/mlp/dropout/p{p}/{overrides}/seed{s}" for p in (0.1, 0.5) for s in (0, 1)
    ]


def test_a_repeated_sweep_skips_finished_runs_and_force_reruns_them(dropbench, tmp_path):
    sweep = ["run", "-m", *MLP, "epochs=1", "p=0.1,0.5"]
    done = dropbench(*sweep)
    assert done.returncode == 0, done.stderr
    assert "dropbench: run 1 of 2: p=0.1\n" in done.stdout and "dropbench: run 2 of 2: p=0.5\n" in done.stdout
    counts = "2 runs: 2 finished, 0 skipped, 0 resumed, 0 diverged, 0 refused, 0 busy, 0 failed"
    assert f"dropbench: sweep done: {counts}" in done.stdout
    assert "dropbench: slowest run: " in done.stdout
    assert done.stdout.rstrip().endswith("dropbench: next: dropbench report results/sweeps/default")
    assert not list((tmp_path / "results").rglob(".dropbench-sweep-*"))  # the ledger is gone
    first = records(tmp_path / "results")
    again = dropbench(*sweep)
    assert again.returncode == 0, again.stderr
    assert "2 runs: 0 finished, 2 skipped," in again.stdout and "slowest run" not in again.stdout
    skips = [line for line in again.stdout.splitlines() if line.startswith("dropbench: skip")]
    assert len(skips) == 2 and all("finished already; force=true re-runs it" in s for s in skips)
    assert records(tmp_path / "results") == first  # untouched, finished_at included
    forced = dropbench(*sweep, "force=true")
    assert forced.returncode == 0 and "dropbench: skip" not in forced.stdout
    rerun = records(tmp_path / "results")
    assert {k: comparable(r) for k, r in rerun.items()} == {k: comparable(r) for k, r in first.items()}


def test_force_with_a_reg_that_ignores_p_retrains_its_one_run_once_per_command(dropbench, tmp_path):
    sweep = ["run", "-m", *MLP, "epochs=1", "reg=none", "p=0.2,0.5,0.8"]
    assert dropbench(*sweep).returncode == 0
    [first] = records(tmp_path / "results").values()
    forced = dropbench(*sweep, "force=true")
    assert forced.returncode == 0, forced.stderr
    skips = [line for line in forced.stdout.splitlines() if line.startswith("dropbench: skip")]
    assert len(skips) == 2 and all("re-run by this command already" in line for line in skips)
    [rerun] = records(tmp_path / "results").values()
    assert rerun["finished_at"] > first["finished_at"] and comparable(rerun) == comparable(first)


def test_invalid_and_redundant_jobs_are_skipped_with_a_reason_and_the_sweep_goes_on(dropbench, tmp_path):
    done = dropbench("run", "-m", *MLP, "epochs=1", "reg=spatial,none,dropout", "p=0.2,0.5")
    assert done.returncode == 0, done.stderr
    invalid = [line for line in done.stderr.splitlines() if line.startswith("dropbench: skip")]
    assert len(invalid) == 2 and all("reg=spatial does not apply to model=mlp" in s for s in invalid)
    assert "reg=none ignores p: one run serves every p" in done.stdout
    counts = "6 runs: 3 finished, 1 skipped, 0 resumed, 0 diverged, 2 refused, 0 busy, 0 failed"
    assert counts in done.stdout  # reg=none runs once
    found = records(tmp_path / "results")
    regs = sorted((r["config"]["reg"], r["config"]["p"]) for r in found.values())
    assert regs == [("dropout", 0.2), ("dropout", 0.5), ("none", None)]
    assert not any("spatial" in str(d) for d in run_dirs(tmp_path / "results"))  # no empty folders left


def test_a_diverging_run_is_recorded_as_such_and_the_sweep_goes_on(dropbench, tmp_path):
    done = dropbench("run", "-m", *MLP, "optimizer=sgd", "lr=1e12,0.01")
    assert done.returncode == 0, done.stderr
    assert "diverged at epoch 1 (train/loss is not finite)" in done.stdout
    assert "2 runs: 1 finished, 0 skipped, 0 resumed, 1 diverged, 0 refused, 0 busy, 0 failed" in done.stdout
    by_status = {r["status"]: r for r in records(tmp_path / "results").values()}
    assert set(by_status) == {"diverged", "finished"}
    diverged = by_status["diverged"]
    assert diverged["diverged"] == {"epoch": 1, "metric": "train/loss"} and diverged["final"] == {}
    assert diverged["history"][0]["train/loss"] is None  # NaN stored as JSON null
    again = dropbench(
        "run", *MLP, "optimizer=sgd", "lr=1e12"
    )  # a single run finds the sweep's? no: own folder
    assert again.returncode == 0


def test_a_run_with_a_different_config_in_its_folder_is_refused_naming_the_difference(dropbench, tmp_path):
    assert dropbench("run", *MLP, "epochs=1").returncode == 0
    [path] = (tmp_path / "results").rglob("metrics.json")
    record = json.loads(path.read_text())
    record["resolved_config"]["lr"] = 0.5  # as if configs/config.yaml's default had changed since
    path.write_text(json.dumps(record))
    done = dropbench("run", *MLP, "epochs=1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"dropbench: error: {path.parent} holds a finished run with another config "
        "(lr: 0.5 there, 0.001 now); force=true replaces it, or choose another name= or results_dir="
    ]
    assert json.loads(path.read_text()) == record  # nothing lost


def test_a_sweep_counts_a_job_refused_for_another_configs_record_as_refused_not_skipped(dropbench, tmp_path):
    assert dropbench("run", "-m", *MLP, "epochs=1").returncode == 0
    [path] = (tmp_path / "results").rglob("metrics.json")
    record = json.loads(path.read_text())
    record["resolved_config"]["lr"] = 0.5
    path.write_text(json.dumps(record))
    done = dropbench("run", "-m", *MLP, "epochs=1")
    assert done.returncode == 0 and "holds a finished run with another config" in done.stderr
    assert "1 runs: 0 finished, 0 skipped, 0 resumed, 0 diverged, 1 refused, 0 busy, 0 failed" in done.stdout
    assert json.loads(path.read_text()) == record  # nothing lost


def test_a_record_made_before_a_setting_existed_agrees_when_the_setting_is_at_its_default(
    dropbench, tmp_path
):
    assert dropbench("run", *MLP, "epochs=1").returncode == 0
    [path] = (tmp_path / "results").rglob("metrics.json")
    record = json.loads(path.read_text())
    del record["resolved_config"]["eval"]  # as if eval.* had been added to dropbench since
    path.write_text(json.dumps(record))
    again = dropbench("run", *MLP, "epochs=1")
    assert again.returncode == 0 and "dropbench: skip" in again.stdout
    assert json.loads(path.read_text()) == record  # skipped, not re-run
    del record["resolved_config"]["epochs"]  # missing, and this run is not at the default (10)
    path.write_text(json.dumps(record))
    refused = dropbench("run", *MLP, "epochs=1")
    assert refused.returncode == 2 and "(epochs: None there, 1 now)" in refused.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes_to_the_uninterrupted_result(
    dropbench_env, dropbench, tmp_path, stop
):
    # Many short epochs, so that the interrupt lands mid-run, after some checkpoints.
    args = ["run", "model=mlp", "model.hidden=[64]", *TINY, "epochs=20", "batch_size=4"]
    process = subprocess.Popen(
        [sys.executable, "-m", "dropbench", *args, "results_dir=stopped"],
        cwd=tmp_path,
        env=dropbench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "stopped").rglob("checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr
    assert f"{stop.name}: stopping after the current step" in stderr
    [interrupted] = records(tmp_path / "stopped").values()
    assert interrupted["status"] == "interrupted" and 1 <= len(interrupted["history"]) < 20
    [checkpoint] = (tmp_path / "stopped").rglob("checkpoint.pt")
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["state"]["epoch"] == len(interrupted["history"])  # the record lists what was saved

    resumed = dropbench(*args, "results_dir=stopped")
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {len(interrupted['history'])} of 20" in resumed.stdout  # Hydra logs to stdout
    assert not list((tmp_path / "stopped").rglob("checkpoint.pt"))  # the result supersedes it
    assert dropbench(*args, "results_dir=whole").returncode == 0
    [stopped_then_resumed] = records(tmp_path / "stopped").values()
    [whole] = records(tmp_path / "whole").values()
    assert stopped_then_resumed["status"] == "finished"
    assert comparable(stopped_then_resumed) == comparable(whole)
    [run_dir] = {path.parent for path in (tmp_path / "stopped").rglob("metrics.json")}
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("val/acc")] == list(range(1, 21))  # each epoch once


def test_a_folder_name_beyond_the_limit_is_shortened_uniquely_and_the_same_every_time():
    short = "lr=0.01,model.hidden=[32]"
    assert folder_name(short) == short and folder_name("") == ""
    long = "model.hidden=[" + ",".join(["4"] * 200)
    a, b = folder_name(long + ",4]"), folder_name(long + ",5]")  # they differ past the cut only
    assert a != b and a == folder_name(long + ",4]")
    assert len(a.encode()) == len(b.encode()) == NAME_MAX and a.startswith("model.hidden=[4,4,")
    wide = folder_name("name=" + "é" * 200)  # two bytes a character: never cut in half
    assert len(wide.encode()) <= NAME_MAX and wide.startswith("name=é")


def test_one_setting_typed_with_or_without_spaces_names_one_folder():
    assert (
        folder_name("model.hidden=[32, 16],reg.layer_p=[0.3, 0.5]")
        == "model.hidden=[32,16],reg.layer_p=[0.3,0.5]"
    )
    assert folder_name("lr = 0.01 ,x={a: 1}") == "lr=0.01,x={a:1}"
    assert folder_name("name='a , b',y=[1, 2]") == "name='a , b',y=[1,2]"  # a quoted value keeps its spaces


def test_a_rerun_typed_with_spaces_finds_the_finished_run_and_skips_it(dropbench, tmp_path):
    first = dropbench("run", *TINY, "epochs=1", "model.hidden=[8,8]")
    assert first.returncode == 0, first.stderr
    again = dropbench("run", *TINY, "epochs=1", "model.hidden=[8, 8]")
    assert again.returncode == 0 and "dropbench: skip" in again.stdout
    [folder] = {path.parent.parent.name for path in (tmp_path / "results").rglob("metrics.json")}
    assert folder.endswith("model.hidden=[8,8]") and " " not in folder


def test_runs_whose_overrides_exceed_a_folder_name_get_their_own_folders_and_are_found_again(
    dropbench, tmp_path
):
    # two lists of 120 layers that differ only in the last one, past where the name is cut
    deep = ",".join(["4"] * 119)
    sweep = ["run", "-m", *TINY, "epochs=1", f"model.hidden=[{deep},4],[{deep},5]"]
    done = dropbench(*sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")  # resolved in workers
    assert done.returncode == 0, done.stderr
    found = records(tmp_path / "results")
    assert sorted(r["resolved_config"]["model"]["hidden"][-1] for r in found.values()) == [4, 5]
    assert all(len(part.encode()) <= NAME_MAX for path in found for part in Path(path).parts)
    again = dropbench(*sweep)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished already") == 2 and records(tmp_path / "results") == found


def test_a_jobs_outcome_is_read_from_its_folder(tmp_path):
    run_dir = RunDir(tmp_path)
    assert outcome(run_dir, time.time(), had_checkpoint=False) == "failed"  # no record: it could not run

    def record(status: str, finished_at: str) -> None:
        run_dir.metrics.write_text(json.dumps({"status": status, "finished_at": finished_at}))

    record("finished", "2020-01-01T00:00:00.000+00:00")
    assert outcome(run_dir, time.time(), had_checkpoint=False) == "skipped"  # done before the job began
    started = time.time()
    record("finished", datetime.now(timezone.utc).isoformat())
    assert outcome(run_dir, started, had_checkpoint=False) == "finished"
    assert outcome(run_dir, started, had_checkpoint=True) == "resumed"
    record("diverged", datetime.now(timezone.utc).isoformat())
    assert outcome(run_dir, started, had_checkpoint=False) == "diverged"
    record("interrupted", datetime.now(timezone.utc).isoformat())
    assert outcome(run_dir, started, had_checkpoint=True) == "failed"


def test_a_sweeps_size_counts_the_grid_of_its_params_and_overrides_or_its_trials():
    basic = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    grid = {"_target_": basic, "params": {"seed": "0,1", "p": "0.2,0.5,0.8"}}
    config = OmegaConf.create({"hydra": {"sweeper": grid, "overrides": {"task": ["p=0.1,0.5", "lr=0.01"]}}})
    assert sweep_plan(config) == (4, ["p", "seed"])  # the command's p replaces the params' p
    trials = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "n_trials": 3}
    assert sweep_plan(OmegaConf.create({"hydra": {"sweeper": trials, "overrides": {"task": []}}})) == (
        3,
        None,
    )
