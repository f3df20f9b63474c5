"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file dropbench writes (records, checkpoints, weights, caches, report tables, benchmark
tables) goes through :func:`write_atomic`: the content is written to a temporary name in the
same folder, flushed to disk and renamed over the final name. An exception or a kill at any
point leaves the previous file intact, and the temporary file is removed (or, after a kill,
left under a name starting with ``.`` and ending in ``.tmp``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def write_atomic(path: Path | str, write: Callable[[Path], None], private: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    Files get the usual permissions (umask), since records and reports are meant to be shared;
    ``private`` keeps ``mkstemp``'s 0600 instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
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
    except BaseException:
        tmp.unlink(missing_ok=True)
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

    return write_atomic(path, lambda tmp: torch.save(payload, tmp))
