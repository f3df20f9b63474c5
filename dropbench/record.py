"""What a run leaves on disk: TensorBoard scalars and ``metrics.json``, both named ``split/metric``."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

METRICS_FILE = "metrics.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def git_commit(package: Path) -> str | None:
    """The commit of dropbench's own checkout (``-dirty`` if it has changes), or None.

    None too when ``package`` is installed inside some other repository (a venv in a
    user's project): that repository's commit says nothing about dropbench's code.
    """
    try:
        top = Path(git(package, "rev-parse", "--show-toplevel"))
        if top.resolve() != package.resolve().parent:
            return None
        commit = git(package, "rev-parse", "HEAD")
        dirty = git(package, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


class ScalarLog:
    """TensorBoard event files in the run folder; scalar tags are the ``split/metric`` names."""

    def __init__(self, run_dir: Path) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            if "/" in name:  # bookkeeping such as "epoch" is not a metric
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
