"""A run folder and every file in it: the one place that names them.

A run folder holds, as the run goes on:

- ``.hydra/``, ``dropbench.log``: written by Hydra before the task starts;
- ``.lock``: held (``flock``) by the process training the run;
- ``resolved_config.yaml``: the whole config, interpolations resolved;
- ``checkpoint.pt``: after each epoch but the last, enough to resume;
- ``events.out.tfevents.*``: TensorBoard's curves, HParams and images;
- ``metrics.json``: the record, whatever the status (finished, diverged, interrupted);
- ``weights.pt``: the best-validation weights of a finished run;
- ``reconstructions.pt``: a reconstruction task's first test images and their reconstructions
  by those weights (what the report draws).

The training side writes them (:mod:`dropbench.app`, :mod:`dropbench.resume`,
:mod:`dropbench.record`); the report only reads them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from dropbench.atomic import TMP_SUFFIX

#: The longest name of one folder, in bytes, on Linux and macOS file systems (NAME_MAX)
NAME_MAX = 255
#: Hex digits of the hash that ends a shortened name: 64 bits, so two lists never meet
HASH_DIGITS = 16
#: The resolver the folder path in ``configs/config.yaml`` names its overrides' level with
FOLDER_NAME_RESOLVER = "dropbench_folder_name"


#: A quoted string in an override (its spaces are its value's), or a run of text between them
_QUOTED = re.compile(r"""('[^']*'|"[^"]*")""")
#: Spaces around Hydra's delimiters, which its grammar ignores: [0.3, 0.5] is [0.3,0.5]
_SPACED_DELIMITER = re.compile(r"\s*([\[\]{},:=])\s*")


def canonical_overrides(overrides: str) -> str:
    """``reg.layer_p=[0.3, 0.5]`` as ``reg.layer_p=[0.3,0.5]``: the spaces Hydra's grammar
    ignores (around ``[ ] { } , : =``) removed outside quoted strings, so that one setting typed
    two ways names one folder, where Hydra's ``override_dirname`` keeps the text as typed."""
    parts = _QUOTED.split(overrides)  # odd indices: the quoted strings, kept as they are
    return "".join(part if i % 2 else _SPACED_DELIMITER.sub(r"\1", part) for i, part in enumerate(parts))


def folder_name(overrides: str) -> str:
    """The folder level named by a run's overrides (``lr=0.01,model.hidden=[32]``): the text
    (:func:`canonical_overrides`), or, beyond :data:`NAME_MAX` bytes, its start and a hash of all of it.

    Shortened rather than refused: a long override list is a legitimate run, the hash makes the
    name as unique as the full text (two lists never share a folder), and it is a function of
    the text alone, so the same command finds the same folder again to skip or resume it. The
    full list stays in the folder's ``.hydra/overrides.yaml`` and its records.
    """
    overrides = canonical_overrides(overrides)
    encoded = overrides.encode()
    if len(encoded) <= NAME_MAX:
        return overrides
    digest = hashlib.sha256(encoded).hexdigest()[:HASH_DIGITS]
    marker = f"...{digest}"
    start = encoded[: NAME_MAX - len(marker)].decode(errors="ignore")  # never half a character
    return start + marker


# Hydra resolves the run folder's path wherever the run starts (a launcher's worker too), and
# every such process imports this module (the task's): registering here covers them all.
OmegaConf.register_new_resolver(FOLDER_NAME_RESOLVER, folder_name, replace=True)


@dataclass(frozen=True)
class RunDir:
    """The files of the run folder ``path``."""

    path: Path

    METRICS = "metrics.json"
    CHECKPOINT = "checkpoint.pt"
    WEIGHTS = "weights.pt"
    RECONSTRUCTIONS = "reconstructions.pt"
    RESOLVED_CONFIG = "resolved_config.yaml"
    LOCK = ".lock"
    HYDRA = ".hydra"
    LOG = "dropbench.log"
    EVENTS = "events.out.tfevents.*"
    #: What exists before the task starts: a folder holding only these holds nothing of a run.
    BEFORE_TASK = frozenset({HYDRA, LOG, LOCK})
    #: Signs that a run started, when it has no record yet.
    STARTED = (HYDRA, CHECKPOINT)

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def reconstructions(self) -> Path:
        return self.path / self.RECONSTRUCTIONS

    @property
    def resolved_config(self) -> Path:
        return self.path / self.RESOLVED_CONFIG

    @property
    def lock(self) -> Path:
        return self.path / self.LOCK

    @classmethod
    def holds_run(cls, names: set[str]) -> bool:
        """Whether a folder with these entries is a run folder (finished or only started)."""
        return cls.METRICS in names or any(marker in names for marker in cls.STARTED)

    def clear_results(self) -> None:
        """What ``force=true`` removes before re-running: every result and checkpoint of the run."""
        for path in (self.metrics, self.checkpoint, self.weights, self.reconstructions, self.resolved_config):
            path.unlink(missing_ok=True)
        for events in self.path.glob(self.EVENTS):
            events.unlink()

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove what killed atomic writes left behind (``.<name>.*.tmp``); call it holding the
        run's lock, so that no other process can be writing here. Returns what was removed."""
        stale = sorted(self.path.glob(f".*{TMP_SUFFIX}")) if self.path.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def remove_if_untouched(self, results_dir: Path | None = None) -> None:
        """Remove the folder if it holds only what Hydra wrote before the task (nothing of a run),
        and then its parents below ``results_dir`` that this leaves empty."""
        if not (self.path.is_dir() and {p.name for p in self.path.iterdir()} <= self.BEFORE_TASK):
            return
        shutil.rmtree(self.path, ignore_errors=True)
        if results_dir is None:
            return
        top, parent = results_dir.resolve(), self.path.resolve().parent
        while parent != top and top in parent.parents:
            try:
                parent.rmdir()  # only if empty: another run's folder keeps it
            except OSError:
                break
            parent = parent.parent
