"""A full disk: one line naming the file and "no space left on device", earlier results intact,
a sweep stopped. No real full disk: the errors are injected where the writes happen."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tinyrun import SMALL_MODEL, TINY

from dropbench import atomic
from dropbench.atomic import torch_save_atomic, write_text_atomic
from dropbench.errors import DropbenchError, StorageError
from dropbench.preflight import check_writable

MLP = [*SMALL_MODEL["mlp"], *TINY]
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = write_text_atomic(tmp_path / "metrics.json", "old")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StorageError) as error:
        write_text_atomic(path, "new")
    assert str(error.value) == f"cannot write {path}: no space left on device"
    assert isinstance(error.value, DropbenchError) and isinstance(error.value, OSError)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize(
    ("message", "full", "said"),
    [
        (TORCH_FULL, True, "no space left on device"),
        (
            "PytorchStreamWriter failed writing file data/0: file write failed",
            True,
            "no space left on device",
        ),
        (TORCH_FULL, False, "the write failed (perhaps no space left on device)"),  # no telling why
    ],
)
def test_torch_saves_failed_write_says_no_space_only_on_a_full_disk(
    tmp_path, monkeypatch, message, full, said
):
    def fail(payload, tmp):
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(atomic, "is_full", lambda folder: full)
    with pytest.raises(StorageError) as error:
        torch_save_atomic({}, tmp_path / "checkpoint.pt")
    assert str(error.value) == f"cannot write {tmp_path / 'checkpoint.pt'}: {said}"
    assert not list(tmp_path.iterdir())


def test_other_torch_errors_are_left_alone(tmp_path, monkeypatch):
    def fail(payload, tmp):
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(RuntimeError, match="^cannot pickle this$"):
        torch_save_atomic({}, tmp_path / "x.pt")


def test_is_full_reads_the_file_systems_free_space(tmp_path, monkeypatch):
    assert not atomic.is_full(tmp_path)  # the test machine has room
    stats = os.statvfs(tmp_path)
    monkeypatch.setattr(os, "statvfs", lambda folder: os.statvfs_result((*stats[:4], 10, *stats[5:])))
    assert atomic.is_full(tmp_path)  # 10 blocks free


def test_a_full_results_dir_is_refused_before_hydra_starts(tmp_path, monkeypatch):
    monkeypatch.setattr("dropbench.preflight.is_full", lambda folder: True)
    with pytest.raises(
        DropbenchError, match=r"results_dir='.*': no space left on device \(under 1 MiB free\)"
    ):
        check_writable(tmp_path)


# --- a sweep on a disk that fills up, in a subprocess whose writes fail as a full disk's would ---

#: Prepended to ``python -m dropbench``: makes the given save fail once the first run has finished
INJECT = """
import errno, os, sys
from pathlib import Path
import torch
import dropbench.app as app, dropbench.atomic as atomic

def failing(save, error):
    def fail(*args, **kwargs):
        if any(Path("results").rglob("metrics.json")):  # once the first run has finished
            raise error
        return save(*args, **kwargs)
    return fail

{patch}
from dropbench.cli import main
sys.exit(main(sys.argv[1:]))
"""
PATCHES = {  # where the disk is found full: the next job's Hydra config, or torch.save's checkpoint
    ".hydra/config.yaml": "app.hydra_save_config = failing(app.hydra_save_config, OSError(errno.ENOSPC, ''))",
    "checkpoint.pt": f"torch.save = failing(torch.save, RuntimeError({TORCH_FULL!r}))\n"
    "atomic.is_full = lambda folder: True",
}


@pytest.mark.parametrize("where", PATCHES)
def test_a_sweep_that_fills_the_disk_stops_with_one_line_and_keeps_what_finished(
    dropbench_env, tmp_path, where
):
    script = textwrap.dedent(INJECT).format(patch=PATCHES[where])
    done = subprocess.run(
        [sys.executable, "-c", script, "run", "-m", "p=0.1,0.2,0.3", *MLP],
        cwd=tmp_path,
        env=dropbench_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in done.stderr
    assert line.startswith("dropbench: error: cannot write ") and "/p0.2/" in line
    assert line.endswith(f"{where}: no space left on device")
    [record] = [json.loads(p.read_text()) for p in Path(tmp_path, "results").rglob("metrics.json")]
    assert record["status"] == "finished" and record["config"]["p"] == 0.1  # intact
    assert "run 3 of 3" not in done.stdout  # the sweep stopped
