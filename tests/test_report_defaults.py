"""Runs recorded before a setting existed ran with its declared default: the report fills it
in, so an old and a new run of the same setup are one row, not two."""

from __future__ import annotations

import copy

import pandas as pd
from test_report import record, write_run

from dropbench.report.build import Options, make_report
from dropbench.schema import declared_defaults


def test_an_old_run_without_a_setting_is_labelled_as_a_new_run_at_its_default(tmp_path):
    old = record("dropout", 0.5, {}, 0.0, 0, 0.97, 0.97)
    new = copy.deepcopy(record("dropout", 0.5, {}, 0.0, 1, 0.97, 0.97))
    defaults = declared_defaults(new["config"])
    new["config"]["l1"] = defaults["l1"]
    new["resolved_config"]["reg"]["place"] = defaults["reg.place"]
    old["resolved_config"]["model"] = {"hidden": [800, 800]}  # made before model.activation existed
    new["resolved_config"]["model"] = {"hidden": [800, 800], "activation": defaults["model.activation"]}
    assert "l1" not in old["config"] and "place" not in old["resolved_config"]["reg"]
    write_run(tmp_path / "r" / "old", old)
    write_run(tmp_path / "r" / "new", new)
    out = make_report([tmp_path / "r"], tmp_path / "out", Options()).folder
    runs = pd.read_csv(out / "runs.csv")
    assert runs["label"].tolist() == ["dropout", "dropout"]
    assert runs["model.activation"].tolist() == ["relu", "relu"]
    assert runs["reg.place"].tolist() == ["after", "after"]
