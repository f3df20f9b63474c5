"""The predefined sweeps in ``configs/experiment/`` and the findings built from them: every grid
point composes into a valid run, and the regeneration script's findings match the files."""

import importlib.util
import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from dropbench.combinations import check_combination
from dropbench.preflight import config_dir

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(
    path.relative_to(config_dir() / "experiment").with_suffix("").as_posix()
    for path in (config_dir() / "experiment").rglob("*.yaml")
    if path.stem != "protocol"  # a fair finding's shared setup, part of each of its experiments
)


def load_regenerate_script():
    spec = importlib.util.spec_from_file_location(
        "regenerate_results", ROOT / "scripts" / "regenerate_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def grid(experiment: str) -> list[list[str]]:
    """Every point of the experiment's sweep (one seed: seeds change nothing that composes)."""
    params = compose_with(f"experiment={experiment}").hydra.sweeper.params
    parser = OverridesParser.create()  # Hydra's own reading: "[0.3,0.5]" is one list, "0.3,0.5" two values
    axes = []
    for key, values in params.items():
        if key == "seed":
            continue
        override = parser.parse_override(f"{key}={values}")
        found = override.sweep_string_iterator() if override.is_sweep_override() else [values]
        axes.append([f"{key}={value}" for value in found])
    return [list(point) for point in itertools.product(*axes)]


def test_there_are_experiments_to_check():
    assert {"mlp_reg_p", "mlp_p_curve", "mlp_table9", "cnn_spatial", "lstm_variational"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_grid_point_composes_into_a_valid_run(experiment):
    points = grid(experiment)
    assert points, f"{experiment} sweeps nothing"
    for point in points:
        cfg = compose_with(f"experiment={experiment}", *point)
        choices = cfg.hydra.runtime.choices
        check_combination(choices.model, choices.reg)  # an invalid pair would be skipped, silently lost
        OmegaConf.resolve(cfg.reg)  # reg settings an override names (reg.mask=...) exist and resolve
        assert cfg.name != "default", f"{experiment} must name its sweep folder"


def test_each_finding_is_filled_by_experiments_that_write_into_its_folder():
    findings = load_regenerate_script().FINDINGS
    for finding, experiments in findings.items():
        for experiment in experiments:
            assert experiment in EXPERIMENTS
            assert compose_with(f"experiment={experiment}").name == finding, experiment
        assert (ROOT / "results" / "findings" / finding / "README.md").is_file(), finding
    used = {experiment for experiments in findings.values() for experiment in experiments}
    assert set(EXPERIMENTS) - used == {"mlp_reg_p"}  # the sweep issue's acceptance sweep, not a finding


@pytest.mark.parametrize("finding", ["cnn_spatial", "mlp_p_curve"])
def test_the_committed_paired_verdicts_are_what_the_rejudge_script_makes_from_runs_csv(tmp_path, finding):
    spec = importlib.util.spec_from_file_location(
        "rejudge_findings", ROOT / "scripts" / "rejudge_findings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = ROOT / "results" / "findings" / finding
    (tmp_path / "runs.csv").write_text((committed / "runs.csv").read_text())
    module.judge_finding(tmp_path)
    made = sorted(p.name for p in tmp_path.glob("*_paired.csv"))
    assert made, "no paired table made"
    for name in made:
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name


FAIR = ["mlp_dropconnect_fair", "cnn_fair", "lstm_fair"]


@pytest.mark.parametrize("finding", FAIR)
def test_a_fair_findings_experiments_share_one_setup_and_sweep_their_own_p(finding):
    experiments = load_regenerate_script().FINDINGS[finding]
    assert experiments[0] == f"{finding}/none" and len(experiments) >= 3
    setups = []
    for experiment in experiments:
        cfg = compose_with(f"experiment={experiment}")
        params = cfg.hydra.sweeper.params
        choices = cfg.hydra.runtime.choices
        setups.append((choices.model, choices.dataset, cfg.epochs, cfg.dataset.train_size, params.seed))
        if choices.reg != "none":
            assert len(str(params.p).split(",")) >= 2, f"{experiment} must sweep its own grid of p"
    assert len(set(setups)) == 1, setups
