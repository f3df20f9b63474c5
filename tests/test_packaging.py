"""A wheel must carry every config folder (pyproject lists them one by one)."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def test_every_config_folder_ships_in_the_wheel():
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {p.parent for p in (ROOT / "configs").rglob("*.yaml")}
    for folder in folders:
        relative = folder.relative_to(ROOT / "configs").parts
        assert ".".join(("dropbench", "configs", *relative)) in packages, folder


def test_readme_states_the_model_reg_table_of_the_code():
    from dropbench.combinations import invalid_pairs

    readme = (ROOT / "README.md").read_text()
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")) for line in readme.splitlines()}
    for (model, reg), reason in invalid_pairs().items():
        assert (model, reg, reason) in rows, (model, reg)


def test_every_python_package_ships_in_the_wheel():
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    for init in (ROOT / "dropbench").rglob("__init__.py"):
        assert ".".join(init.parent.relative_to(ROOT).parts) in packages, init.parent
