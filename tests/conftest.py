"""Fixtures shared by the end-to-end tests: tiny datasets in the real file formats and a runner."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakedata import write_cifar, write_mnist_like


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist_like(root / "MNIST" / "raw", n_train=120, n_test=40)
    write_mnist_like(root / "FashionMNIST" / "raw", n_train=120, n_test=40, seed=1)
    write_cifar(root / "cifar-10-batches-py", n_train=120, n_test=40)
    write_cifar(root / "cifar-100-python", n_train=150, n_test=40, cifar100=True)
    return root


@pytest.fixture
def dropbench_env(data_root, tmp_path) -> dict[str, str]:
    """The environment of a ``dropbench`` subprocess: the tiny data and a private cache."""
    from dropbench.app import COMMAND_STARTED

    inherited = {k: v for k, v in os.environ.items() if k != COMMAND_STARTED}  # each command its own start
    return {**inherited, "DROPBENCH_DATA": str(data_root), "DROPBENCH_CACHE": str(tmp_path / "cache")}


@pytest.fixture
def dropbench(dropbench_env, tmp_path):
    """Run ``python -m dropbench ARGS`` in ``tmp_path`` with the tiny data."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dropbench", *args],
            cwd=tmp_path,
            env=dropbench_env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


@pytest.fixture
def dropbench_here(data_root, tmp_path, monkeypatch, capfd):
    """``dropbench ARGS`` in this process, for commands that stop before training (a bad input):
    the same exit status and output as :func:`dropbench`'s subprocess, without its 3 s start."""
    from hydra.core.global_hydra import GlobalHydra

    from dropbench import cli
    from dropbench.app import COMMAND_STARTED

    monkeypatch.setenv("DROPBENCH_DATA", str(data_root))
    monkeypatch.setenv("DROPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.run hands Hydra its arguments there
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        # a new command's start, unset again afterwards (cli.run would keep the first one for good,
        # and every later subprocess would inherit it: force=true would see its runs as re-run)
        monkeypatch.setenv(COMMAND_STARTED, str(time.time()))
        capfd.readouterr()
        try:
            status = cli.main(list(args))
        except SystemExit as stop:  # a run's one-line error exits 2 from inside Hydra's task
            status = stop.code
        finally:
            GlobalHydra.instance().clear()  # hydra.main leaves it set; the next compose needs it clear
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["dropbench", *args], status, out, err)

    return run
