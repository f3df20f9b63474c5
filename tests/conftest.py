"""Fixtures shared by the end-to-end tests: tiny datasets in the real file formats and a runner."""

import os
import subprocess
import sys
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
    return {**os.environ, "DROPBENCH_DATA": str(data_root), "DROPBENCH_CACHE": str(tmp_path / "cache")}


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
