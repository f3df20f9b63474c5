"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file dropbench writes (records, checkpoints, weights, caches, report tables, benchmark
tables) goes through :func:`write_atomic`: the content is written to a temporary name in the
same folder, flushed to disk and renamed over the final name. An exception or a kill at any
point leaves the previous file intact, and the temporary file is removed (or, after a kill,
left under a name starting with ``.`` and ending in ``.tmp``).

A write that fails raises :class:`~dropbench.errors.StorageError`, one line naming the file
and why: "no space left on device" for a full disk, also where torch.save hides it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dropbench.errors import StorageError

TMP_SUFFIX = ".tmp"
#: errno values saying the file system has no room left for the write
FULL = (errno.ENOSPC, errno.EDQUOT)
#: torch.save's words for any failed write: its C++ writer drops the errno
TORCH_WRITE_FAILED = ("unexpected pos", "PytorchStreamWriter failed")
#: Free bytes below which a file system counts as full when a write failed without saying why
NEARLY_FULL = 1 << 20


def storage_error(path: Path | str, error: OSError) -> StorageError:
    """``error``, raised writing ``path``, as the one line a user sees."""
    if isinstance(error, StorageError):
        return error
    reason = os.strerror(error.errno) if error.errno in FULL else error.strerror or str(error)
    return StorageError(f"cannot write {path}: {reason[:1].lower()}{reason[1:]}")


def is_full(folder: Path | str) -> bool:
    """Whether the file system holding ``folder`` has (nearly) no room left for this user."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < NEARLY_FULL


def write_atomic(path: Path | str, write: Callable[[Path], None], private: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    Files get the usual permissions (umask), since records and reports are meant to be shared;
    ``private`` keeps ``mkstemp``'s 0600 instead.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as error:
        raise storage_error(path, error) from None
    os.close(fd)
    tmp = Path(name)
    try:
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename makes it the file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise storage_error(path, error) from None
        raise
    return path


def write_text_atomic(path: Path | str, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None: strict JSON has no NaN (a diverged run has them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path | str, payload: Any) -> Path:
    """``payload`` as indented strict JSON (non-finite floats as null), written atomically."""
    text = json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def torch_save_atomic(payload: Any, path: Path | str) -> Path:
    """``torch.save`` so that a crash mid-write leaves the previous file intact."""
    import torch  # not at module level: the report and the benchmarks' tables need no torch

    def save(tmp: Path) -> None:
        try:
            torch.save(payload, tmp)
        except RuntimeError as error:
            if not any(words in str(error) for words in TORCH_WRITE_FAILED):
                raise
            # looked at while the partial file still takes its room: a full disk shows as full
            if is_full(tmp.parent):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
            raise StorageError(
                f"cannot write {path}: the write failed (perhaps no space left on device)"
            ) from None

    return write_atomic(path, save)
