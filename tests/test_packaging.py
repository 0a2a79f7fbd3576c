"""Packaging: environment.yml stays in sync with pyproject.toml, and torch stays pinned."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].strip().lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e .") or line.startswith('-e ".') for line in pip), "environment.yml must pip-install the project"
    # conda must not list packages the project does not depend on (they would drift)
    declared = {CONDA_NAMES.get(_name(r), _name(r)) for r in project["dependencies"]} | {"python", "pip"}
    assert conda <= declared, f"environment.yml lists packages pyproject.toml does not: {sorted(conda - declared)}"
    # the pinned torch must be the same in both
    torch_pin = next(r for r in project["dependencies"] if _name(r) == "torch")
    conda_torch = next(d for d in env["dependencies"] if isinstance(d, str) and _name(d) == "pytorch")
    assert torch_pin.split("==")[1] == conda_torch.split("=")[-1]


def test_torch_is_pinned_by_constraints():
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", constraints, re.M)
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
