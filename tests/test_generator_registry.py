"""One registry of data set generators (lmmvae.data.sets.generators) builds the `lmmvae data`
subcommands and the workflow config's valid `generator:` values: a toy generator registered here
becomes a working subcommand (typed options, written file) and a dataset the plan accepts, with its
options checked by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmmvae.cli import main
from lmmvae.data.h5 import read_h5
from lmmvae.data.sets.generators import GENERATORS, Generator, Option, common_options, workflow_generators
from lmmvae.errors import ConfigError
from lmmvae.reporting.experiments import load_plan
from simulate import simulate_lmm

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _toy(args):
    return simulate_lmm(n_subjects=args.instances, n_times=args.timepoints, data_dim=args.features, seed=args.seed)


TOY = Generator("toy-walk", "a toy simulated LMM", (
    *common_options(instances=4, timepoints=5),
    Option(("--features",), ("integer", 1, 50), 3, "features (default 3)"),
), _toy)


@pytest.fixture
def toy(monkeypatch):
    GENERATORS.names()  # the package's generators registered first; the registry as it was, afterwards
    monkeypatch.setattr(GENERATORS, "_entries", dict(GENERATORS._entries))
    GENERATORS.register(TOY)
    return TOY


def test_a_registered_generator_is_a_data_subcommand_with_typed_options(toy, tmp_path, capsys):
    out = tmp_path / "toy.h5"
    assert main(["data", "toy-walk", "--instances", "6", "--features", "7", "--out", str(out)]) == 0
    data = read_h5(out)
    assert data.y.shape == (6 * 5, 7)  # --instances and --features reached the generator (5 time points each)
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --features is an integer in [1, 50]: argparse refuses 99
        main(["data", "toy-walk", "--features", "99", "--out", str(out)])
    assert "toy-walk" in workflow_generators()


def _tiny(edit) -> dict:
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    edit(config["datasets"]["health_mnist"])
    return config


def test_the_plan_accepts_a_registered_generator_and_checks_its_options(toy):
    config = _tiny(lambda d: d.update(generator="toy-walk", options={"instances": 5, "features": 2, "quiet": True}))
    plan = load_plan(config, SCHEMA)
    assert plan.datasets["health_mnist"].generator == "toy-walk" and not plan.datasets["health_mnist"].needs_raw
    config = _tiny(lambda d: d.update(generator="toy-walk", options={"colour": "red"}))
    with pytest.raises(ConfigError, match=r"datasets.health_mnist.options: 'colour' is not an option of "
                                          r"`lmmvae data toy-walk`; valid: instances, timepoints, "):
        load_plan(config, SCHEMA)


def test_an_unknown_generator_is_a_one_line_error_listing_the_registered_ones():
    config = _tiny(lambda d: d.update(generator="toy-walk"))
    with pytest.raises(ConfigError, match="datasets.health_mnist.generator: 'toy-walk' is not one of "
                                          "clinical-trial, health-mnist, physionet, rotating-mnist$"):
        load_plan(config, SCHEMA)


def test_raw_generators_take_raw_and_their_synthetic_writers_options():
    config = _tiny(lambda d: d.update(raw=None))
    with pytest.raises(ConfigError, match="datasets.health_mnist.raw: only clinical-trial, physionet read a raw"):
        load_plan(config, SCHEMA)
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["datasets"]["physionet"]["synthetic"]["patients"] = 3  # an alias, not the option's key
    with pytest.raises(ConfigError, match="datasets.physionet.synthetic: 'patients' is not an option of "
                                          "`lmmvae data physionet-synthetic`"):
        load_plan(config, SCHEMA)
    for path in (REPO / ".test" / "config.yaml", REPO / "config" / "default.yaml"):  # the shipped configs pass
        load_plan(yaml.safe_load(path.read_text()), SCHEMA)
