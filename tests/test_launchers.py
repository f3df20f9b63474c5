"""Hydra's joblib, submitit and Optuna plugins under dropbench: the thread budget of parallel runs,
the launcher and sweeper configs, one-line errors for missing plugins, and multiruns end to end."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import LogUniformDistribution, UniformDistribution
from optuna.trial import TrialState
from tinyrun import SMALL_MODEL, TINY

from dropbench import cli
from dropbench.errors import ConfigError
from dropbench.preflight import PLUGIN_CHOICES, check_overrides, config_dir
from dropbench.search import continue_study
from dropbench.settings import default_threads

ROOT = Path(__file__).resolve().parent.parent
TINY_MLP = [*SMALL_MODEL["mlp"], *TINY, "epochs=1"]  # a run takes well under a second
EXTRA_OF = {  # the message's pip extra for every choice that needs a plugin
    "hydra/launcher=joblib": "parallel",
    "hydra/launcher=slurm": "slurm",
    "hydra/launcher=submitit_slurm": "slurm",
    "hydra/launcher=submitit_local": "slurm",
    "hydra/sweeper=search": "search",
    "hydra/sweeper=optuna": "search",
}


# --- threads per run under a parallel launcher ----------------------------------------------------


@pytest.mark.parametrize(
    ("n_jobs", "cores", "threads"),
    [
        (1, 16, 16),
        (2, 16, 8),
        (3, 16, 5),  # rounded down: 3 x 5 <= 16
        (2, 2, 1),
        (16, 16, 1),
        (32, 16, 1),  # more processes than cores: at least one thread each
        (-1, 16, 1),  # joblib: -1 = one process per core
        (-2, 16, 1),  # 15 processes
        (-15, 16, 8),  # 2 processes
        (-16, 16, 16),  # 1 process
        (-100, 16, 16),  # joblib never goes below 1 process
    ],
)
def test_default_threads_splits_the_cores_between_the_processes(n_jobs, cores, threads):
    assert default_threads(n_jobs, cores) == threads


def test_default_threads_never_oversubscribes():
    for cores in range(1, 33):
        for n_jobs in [*range(1, 40), *range(-40, 0)]:
            workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
            threads = default_threads(n_jobs, cores)
            assert threads >= 1 and (workers * threads <= cores or threads == 1), (n_jobs, cores)


def test_default_threads_is_none_without_a_parallel_launcher():
    assert default_threads(None) is None and default_threads(None, 8) is None


def test_default_threads_counts_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert default_threads(2) == 2  # the affinity mask (a taskset, a SLURM cpuset), not the machine
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    assert default_threads(2) == 32
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_threads(-1) == 1


@pytest.mark.parametrize("n_jobs", [0, True, 2.5, "2"])
def test_default_threads_rejects_what_joblib_rejects(n_jobs):
    with pytest.raises(ConfigError, match=r"hydra\.launcher\.n_jobs=.* is invalid"):
        default_threads(n_jobs, 4)


# --- missing plugins: one line naming the pip extra -----------------------------------------------


@pytest.fixture
def without_plugins(monkeypatch):
    """find_spec as if no Hydra plugin were installed; every other module is still found."""
    real = importlib.util.find_spec

    def find_spec(name, package=None):
        return None if name.startswith("hydra_plugins.") else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("choice", EXTRA_OF)
def test_missing_plugin_names_its_pip_extra(without_plugins, choice):
    with pytest.raises(ConfigError) as error:
        check_overrides([choice], config_dir())
    title = PLUGIN_CHOICES[tuple(choice.split("="))].title
    assert str(error.value) == f"{choice} needs {title}; pip install 'dropbench[{EXTRA_OF[choice]}]'"


def test_missing_hydra_plugins_namespace_is_a_missing_plugin(monkeypatch):
    def find_spec(name, package=None):  # what find_spec does when the parent package is missing
        raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pip install 'dropbench\[search\]'"):
        check_overrides(["hydra/sweeper=search"], config_dir())


def test_a_sweep_over_launchers_checks_every_choice(without_plugins):
    with pytest.raises(ConfigError, match=r"^hydra/launcher=joblib needs"):
        check_overrides(["hydra/launcher=basic,joblib"], config_dir())


def test_installed_plugins_and_other_choices_pass(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # check_overrides proves the default results_dir writable
    check_overrides([*EXTRA_OF, "hydra/launcher=basic", "hydra/sweeper=basic", "reg=none"], config_dir())


def test_cli_prints_the_missing_plugin_in_one_line_before_hydra_starts(without_plugins, capsys):
    status = cli.main(["run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "p=0.1,0.5"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dropbench: error: hydra/launcher=joblib needs Hydra's joblib launcher; "
        "pip install 'dropbench[parallel]'"
    ]


def test_every_plugin_extra_is_declared_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for plugin in PLUGIN_CHOICES.values():
        distribution = plugin.module.split(".")[1].replace("_", "-")  # hydra-joblib-launcher
        names = [re.split(r"[<>=!~\[ ;]", requirement)[0] for requirement in extras[plugin.extra]]
        assert distribution in names, plugin


# --- the launcher and sweeper configs, composed ---------------------------------------------------


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_slurm_config_is_the_submitit_launcher_with_one_run_per_job():
    cfg = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (60, 4, 16)
    assert launcher.partition == "gpu" and launcher.array_parallelism == 32
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # beside the sweep's runs


def test_slurm_config_keys_are_the_plugins_own():
    assert compose_hydra("hydra/launcher=slurm").hydra.launcher.partition is None  # the cluster's default
    with pytest.raises(ConfigCompositionException, match="partion"):  # a typo meets the plugin's schema
        compose_hydra("hydra/launcher=slurm", "hydra.launcher.partion=gpu")


def test_search_config_maximizes_over_p_and_log_wd_with_a_seeded_sampler():
    cfg = compose_hydra("hydra/sweeper=search")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize" and sweeper.n_trials == 20
    assert (
        sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db" and sweeper.study_name == "dropbench"
    )
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    # parsed the way the sweeper parses them
    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert not fixed and set(space) == {"p", "wd"}
    assert isinstance(space["p"], UniformDistribution)
    assert (space["p"].low, space["p"].high) == (0.05, 0.8)  # inside dropbench's p in [0, 1)
    assert isinstance(space["wd"], LogUniformDistribution)
    assert (space["wd"].low, space["wd"].high) == (1e-6, 1e-2)


# --- multiruns end to end, as subprocesses on tiny MNIST files, through conftest's dropbench ------


def finished_records(results: Path) -> list[dict]:
    """Every run's metrics.json below ``results``, wherever the run folders are."""
    return [json.loads(path.read_text()) for path in sorted(results.rglob("metrics.json"))]


def test_joblib_launcher_runs_a_two_job_sweep(dropbench, tmp_path):
    done = dropbench("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "p=0.1,0.5", *TINY_MLP)
    assert done.returncode == 0, done.stderr
    assert "Joblib.Parallel(n_jobs=2,backend=loky" in done.stdout
    assert "dropbench: run 1 of 2: p=0.1" in done.stdout and "dropbench: run 2 of 2: p=0.5" in done.stdout
    counts = "2 runs: 2 finished, 0 skipped, 0 resumed, 0 diverged, 0 refused, 0 busy, 0 failed"
    assert counts in done.stdout  # from the workers
    records = finished_records(tmp_path / "results")
    assert sorted(record["config"]["p"] for record in records) == [0.1, 0.5]
    assert all(record["status"] == "finished" for record in records)


def test_search_runs_trials_and_keeps_the_best_validation_accuracy(dropbench, tmp_path):
    done = dropbench("run", "-m", "hydra/sweeper=search", "hydra.sweeper.n_trials=2", *TINY_MLP)
    assert done.returncode == 0, done.stderr
    assert "dropbench: run 2 of 2: " in done.stdout and "2 runs: 2 finished," in done.stdout
    records = finished_records(tmp_path / "results")
    assert len(records) == 2 and records[0]["config"]["p"] != records[1]["config"]["p"]
    for record in records:
        assert 0.05 <= record["config"]["p"] <= 0.8 and 1e-6 <= record["config"]["wd"] <= 1e-2
    [summary] = (tmp_path / "results").rglob("optimization_results.yaml")
    best = yaml.safe_load(summary.read_text())
    assert best["best_value"] == max(record["best"]["val/acc"] for record in records)
    chosen = [r for r in records if r["config"]["p"] == best["best_params"]["p"]]
    assert [r["config"]["wd"] for r in chosen] == [best["best_params"]["wd"]]


def study_trials(results: Path) -> list:
    """The trials of the study that ``hydra/sweeper=search`` stored below ``results``."""
    [db] = results.rglob("optuna.db")
    return optuna.load_study(study_name="dropbench", storage=f"sqlite:///{db}").trials


def test_a_search_run_again_continues_its_stored_study_without_retraining(dropbench, tmp_path):
    first = dropbench("run", "-m", "hydra/sweeper=search", "hydra.sweeper.n_trials=2", *TINY_MLP)
    assert first.returncode == 0, first.stderr
    results = tmp_path / "results"
    before = {path: path.read_text() for path in results.rglob("metrics.json")}
    more = dropbench("run", "-m", "hydra/sweeper=search", "hydra.sweeper.n_trials=3", *TINY_MLP)
    assert more.returncode == 0, more.stderr
    assert "dropbench: run 1 of 1: " in more.stdout and "1 runs: 1 finished," in more.stdout
    trials = study_trials(results)
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 3
    assert len({trial.params["p"] for trial in trials}) == 3  # the third is a new point
    after = {path: path.read_text() for path in results.rglob("metrics.json")}
    assert len(after) == 3 and all(after[path] == text for path, text in before.items())  # not retrained
    records = [json.loads(text) for text in after.values()]
    assert sorted(trial.value for trial in trials) == sorted(r["best"]["val/acc"] for r in records)


def test_a_trial_a_killed_search_left_running_is_asked_again(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="dropbench", storage=storage, direction="maximize")
    done, killed = study.ask(), study.ask()
    for trial in (done, killed):
        trial.suggest_float("p", 0.05, 0.8)
    study.tell(done, 0.9)  # the other was running when its search was killed
    sweeper = OmegaConf.create({"study_name": "dropbench", "storage": storage, "direction": "maximize"})
    assert continue_study(sweeper) == (1, 2)  # one completed, two held
    study = optuna.load_study(study_name="dropbench", storage=storage)  # as the next search will
    old, new = study.trials[1:]
    assert old.state == TrialState.FAIL and new.state == TrialState.WAITING
    assert study.ask().suggest_float("p", 0.05, 0.8) == killed.params["p"]  # the same point again


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (read from /proc: Linux)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigterm_on_a_joblib_sweep_stops_every_worker_each_recording_its_run(dropbench_env, tmp_path):
    slow = [*SMALL_MODEL["mlp"], *TINY, "epochs=300", "batch_size=4"]  # minutes if not stopped
    process = subprocess.Popen(
        [sys.executable, "-m", "dropbench", "run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        + ["p=0.1,0.2,0.3", *slow],
        cwd=tmp_path,
        env=dropbench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = tmp_path / "results"
    deadline = time.monotonic() + 60
    while not list(results.rglob("checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)  # to the command alone, as kill does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "SIGTERM: stopping the sweep's runs after their current step" in stderr
    checkpoints = list(results.rglob("checkpoint.pt"))
    assert checkpoints
    for checkpoint in checkpoints:  # every run that trained an epoch says how far it came
        record = json.loads((checkpoint.parent / "metrics.json").read_text())
        saved = torch.load(checkpoint, weights_only=True)
        assert record["status"] == "interrupted" and len(record["history"]) == saved["state"]["epoch"]
    assert all(record["status"] == "interrupted" for record in finished_records(results))
    assert len(finished_records(results)) <= 2  # the third run never trained: nothing took it
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)]  # workers and resource trackers: all gone
