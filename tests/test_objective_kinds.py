"""The objective's properties (lmmvae.model.objective_kinds) are what callers ask, never its name: an
objective registered here under a new name with GSNN's properties gets GSNN's behaviour everywhere
(config check, draws per step, the priors' defaults, the summary's note, the plan's MCC pairs),
and one with the ELBO's properties gets the ELBO's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lmmvae.config import ModelConfig
from lmmvae.errors import ConfigError
from lmmvae.model.objective_kinds import OBJECTIVE_KINDS, objective_kind, sample_kwargs
from lmmvae.model.priors.olmm import GSNN_Q_A, OLMMOptions
from lmmvae.model.priors.slmm import GSNN_SIGMA_INIT, SLMMOptions
from lmmvae.reporting.experiments import load_plan
from lmmvae.training.checks import check, reads_encoder
from lmmvae.training.objectives import OBJECTIVES, Objective, gsnn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(monkeypatch):
    """``toy``: GSNN's loss and properties under another name and label."""
    kind = dataclasses.replace(objective_kind("gsnn"), name="toy", label="TOY")
    monkeypatch.setitem(OBJECTIVE_KINDS._entries, "toy", kind)
    monkeypatch.setitem(OBJECTIVES._entries, "toy", Objective("toy", gsnn))
    return kind


def test_a_prior_sampling_objective_is_checked_against_the_variant_by_its_property(toy):
    check(ModelConfig(variant="olmm", objective="toy"))  # olmm can sample its prior
    with pytest.raises(ConfigError, match="variant 'vae' cannot be trained by TOY"):
        check(ModelConfig(variant="vae", objective="toy"))
    check(ModelConfig(variant="vae", objective="elbo"))


def test_draws_per_step_and_per_validation_pass_come_from_the_kinds_config_keys(toy):
    config = ModelConfig(variant="olmm", objective="toy", gsnn_samples=3, gsnn_val_samples=7)
    assert sample_kwargs(config) == {"n_samples": 3}
    assert sample_kwargs(config, validation=True) == {"n_samples": 7}
    assert sample_kwargs(dataclasses.replace(config, objective="elbo")) == {}
    assert not reads_encoder(config) and reads_encoder(dataclasses.replace(config, objective="elbo"))


def test_the_priors_defaults_follow_samples_prior(toy):
    olmm, slmm = OLMMOptions().resolve("toy"), SLMMOptions().resolve("toy")
    assert (olmm.q_A, olmm.sigma_z) == (GSNN_Q_A, GSNN_SIGMA_INIT)
    assert (slmm.sigma_eps, slmm.learn_sigma_eps) == (GSNN_SIGMA_INIT, True)
    assert OLMMOptions().resolve("elbo").sigma_z == 1.0 and SLMMOptions().resolve("elbo").sigma_eps == 1.0


def test_the_plan_pairs_seeds_for_mcc_only_when_the_objective_trains_an_encoder(toy):
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert any(p.dataset == "clinical_trial" for p in load_plan(config, schema).seed_pairs)
    config["experiments"]["identifiability_trial"]["models"]["olmm"]["objective"] = "toy"
    assert not any(p.dataset == "clinical_trial" for p in load_plan(config, schema).seed_pairs)


def test_an_unknown_objective_is_a_one_line_error_listing_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown objective 'nope'; valid: elbo, gsnn"):
        objective_kind("nope")
