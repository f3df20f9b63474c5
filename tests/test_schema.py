"""The run schema is the one declaration: the yaml, the checks and every derived list agree with it."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from dropbench import schema
from dropbench.build import compose_config
from dropbench.errors import ConfigError
from dropbench.preflight import config_dir
from dropbench.schema import Role


def main_config():
    return OmegaConf.load(config_dir() / "config.yaml")


def test_the_folder_names_exclude_exactly_the_schemas_identity_runtime_and_control_settings():
    excluded = main_config().hydra.job.config.override_dirname.exclude_keys
    assert sorted(excluded) == sorted(schema.FOLDER_EXCLUDED)


def test_every_top_level_setting_of_the_yaml_is_declared_and_every_declared_one_exists():
    cfg = compose_config([])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    declared = {s.key for s in schema.SETTINGS}
    groups = {s.key for s in schema.GROUPS}
    leaves = set(schema.flatten({k: v for k, v in resolved.items() if k not in groups}))
    assert leaves <= declared, leaves - declared  # a new knob must get its role
    for setting in schema.SETTINGS:
        if setting.key not in groups | {"reg.requires"}:  # requires: only regs that need a trait
            assert OmegaConf.select(cfg, setting.key, default="missing") != "missing", setting.key


def test_the_groups_of_the_schema_are_the_folders_of_configs():
    folders = {p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra"}
    assert folders == {s.key for s in schema.GROUPS}


def test_each_knob_is_checked_under_its_full_key():
    values = OmegaConf.to_container(compose_config(["device=cpu"]), resolve=True)
    knobs = schema.check_knobs(values)
    assert knobs.epochs == values["epochs"] and knobs.mc_samples is None
    bad = {**values, "eval": {"mc_samples": 0}}
    with pytest.raises(ConfigError, match=r"^eval\.mc_samples=0 is invalid"):
        schema.check_knobs(bad)
    for key, value in [("lr", float("nan")), ("wd", float("inf")), ("max_norm", float("nan"))]:
        with pytest.raises(ConfigError, match=rf"^{key}=.* must be a finite number"):
            schema.check_knobs({**values, key: value})
    with pytest.raises(ConfigError, match=r"^seed=.* in \[0, 18446744073709551615\]"):
        schema.check_knobs({**values, "seed": 2**64})
    with pytest.raises(ConfigError, match=r"^force='ture' is invalid; valid: true, false"):
        schema.check_knobs({**values, "force": "ture"})


def test_the_resume_identity_ignores_runtime_control_and_wiring_but_not_results():
    base = OmegaConf.to_container(compose_config(["device=cpu"]), resolve=True)
    identity = schema.result_defining(base, uses_p=True)
    for key in schema.keys(Role.RUNTIME, Role.CONTROL, Role.WIRING):
        assert not any(k == key or k.startswith(f"{key}.") for k in identity), key
    defining = ("p", "seed", "lr", "epochs", "model.hidden", "dataset.train_size")
    defining += ("reg.input_p", "reg.layer_p")
    for key in defining:
        assert key in identity, key
    assert "p" not in schema.result_defining(base, uses_p=False)


def test_the_record_lists_identity_then_result_knobs_and_drops_p_of_a_reg_that_ignores_it():
    values = OmegaConf.to_container(compose_config(["device=cpu", "p=0.3"]), resolve=True)
    knobs = schema.check_knobs(values)
    choices = {"model": "mlp", "dataset": "mnist", "reg": "none", "optimizer": "adam", "schedule": "cosine"}
    settings = schema.run_settings(knobs, choices, uses_p=False)
    assert list(settings) == list(schema.RECORDED) and settings["p"] is None and settings["reg"] == "none"
    roles = {s.key: s.role for s in schema.SETTINGS}
    assert {roles[k] for k in settings} == {Role.IDENTITY, Role.RESULT}
    assert "device" not in settings and "threads" not in settings


def test_every_knob_field_carries_a_role_and_a_check():
    for field in dataclasses.fields(schema.Knobs):
        assert isinstance(field.metadata["role"], Role) and callable(field.metadata["check"]), field.name
