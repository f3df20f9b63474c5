"""Row labels: the regularizer's name plus every setting that tells its runs apart.

Generic over the settings, with no per-regularizer rules. Three kinds of keys are named:

- the reg's own settings (``reg.mask``, ``reg.input_p``, ...) when they vary among that reg's
  runs, unless they only follow p (variational's ``p_input: ${p}``);
- the penalties ``wd``, ``l1`` and ``max_norm`` when they vary among the reg's runs or are on at all:
  they are a regularizer's strength (l2's only one), so "dropout" and "dropout (wd=0.0001)"
  are different methods;
- the training setup (lr, epochs, optimizer, and the model, dataset, optimizer and schedule
  settings such as ``model.hidden``) when it varies anywhere in the table, since a comparison
  across rows trained differently must say so.

A *tuned* key (``dropbench report --tune reg.p_hidden``) is a grid axis chosen on validation
together with p rather than a different method: it stays in the label (each setting has its
rows in the main table) but not in the ``family``, the method the best-p table picks one
setting for; ``tuned`` says that setting ("p_hidden=0.1").
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from dropbench.schema import LABELLED_SETUP, PENALTIES, SETUP_GROUPS

REG_PREFIX = "reg."


def format_value(value: Any) -> str:
    """Short, exact enough text for a setting: 0.0001, 1e-05, batch, none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def varies(values: pd.Series) -> bool:
    """More than one distinct value (missing counts as a value)."""
    return values.astype(object).where(values.notna(), None).map(format_value).nunique() > 1


def is_active(values: pd.Series) -> bool:
    """A penalty that is switched on in some run: non-zero and not null."""
    return bool(((values.notna()) & (values.astype(object) != 0)).any())


def follows_p(values: pd.Series, p: pd.Series) -> bool:
    """A setting equal to p in every run (interpolated from ${p}), so p's column already says it."""
    return bool(values.notna().all() and (values.astype(object) == p.astype(object)).all())


def label_keys(reg_runs: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The columns to name in the labels of one regularizer's runs, in a stable order."""
    own = [c for c in reg_runs.columns if c.startswith(REG_PREFIX) and reg_runs[c].notna().any()]
    keys = [c for c in sorted(own) if varies(reg_runs[c]) and not follows_p(reg_runs[c], reg_runs["p"])]
    keys += [c for c in PENALTIES if c in reg_runs and (varies(reg_runs[c]) or is_active(reg_runs[c]))]
    setup = [c for c in LABELLED_SETUP if c in table] + [
        c for c in table.columns if c.split(".")[0] in SETUP_GROUPS
    ]
    keys += [c for c in setup if varies(table[c])]
    return keys


def settings_text(run: pd.Series, keys: list[str]) -> str:
    """'mask=batch, wd=0.0001': the values of ``keys`` in one run."""
    return ", ".join(f"{key.removeprefix(REG_PREFIX)}={format_value(run[key])}" for key in keys)


def row_label(run: pd.Series, keys: list[str]) -> str:
    """'dropconnect (mask=batch, wd=0.0001)', or the bare reg name when nothing needs saying."""
    settings = settings_text(run, keys)
    return f"{run['reg']} ({settings})" if settings else str(run["reg"])


def add_labels(table: pd.DataFrame, tune: tuple[str, ...] = ()) -> pd.DataFrame:
    """``table`` (one dataset and model) with ``label``, ``family`` and ``tuned`` columns (see
    the module's docstring) and rows in label order.

    Regularizers that ignore p (the baselines) come first, then the others by name.
    """
    columns = {name: pd.Series(index=table.index, dtype=object) for name in ("label", "family", "tuned")}
    for _, reg_runs in table.groupby("reg", sort=False):
        keys = label_keys(reg_runs, table)
        untuned, tuned = [k for k in keys if k not in tune], [k for k in keys if k in tune]
        for name, made in (
            ("label", [row_label(run, keys) for _, run in reg_runs.iterrows()]),
            ("family", [row_label(run, untuned) for _, run in reg_runs.iterrows()]),
            ("tuned", [settings_text(run, tuned) for _, run in reg_runs.iterrows()]),
        ):
            columns[name][reg_runs.index] = made
    labeled = table.assign(**columns, _has_p=table["p"].notna())
    labeled = labeled.sort_values(["_has_p", "reg", "label", "p", "seed"], kind="stable")
    return labeled.drop(columns="_has_p")
