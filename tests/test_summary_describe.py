"""The summary renders what each prior says of itself (Prior.describe): the numbers of an oLMM-VAE
and an sLMM-VAE fit are the model's own parameters, read here independently of the summary; a prior
registered in a test gets its description rendered, and one without describe() gets an explicit
line, not empty tables."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import lmmvae
from lmmvae.answers.summary import summarise
from lmmvae.model import variants
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.model.priors.base import Prior
from lmmvae.model.priors.describe import PriorDescription
from lmmvae.model.priors.normal import StandardNormalPrior
from simulate import simulate_lmm

DESIGN = "~ time + (1 + time | id)"


@pytest.fixture(scope="module")
def data():
    return simulate_lmm(n_subjects=12, n_times=5, n_future=1)


def _fit(data, variant: str, **settings):
    return lmmvae.fit(data, **{"variant": variant, "design": DESIGN, "latent_dim": 2, "epochs": 2,
                               "progress": False, **settings})


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _check_effects(summary, effects, tau: np.ndarray, sd: np.ndarray):
    """Fixed rows: (term, latent) in order, mean and sd; random rows: (column, latent), τ, level spread."""
    fixed = summary.fixed_effects
    assert list(fixed["term"].unique()) == ["(Intercept)", "time"]
    np.testing.assert_allclose(fixed["mean"], _np(effects.shared_mean).reshape(-1))  # [Q_s*L], row-major
    np.testing.assert_allclose(fixed["sd"], sd.reshape(-1))
    levels = _np(effects.random_mean[0]).reshape(12, 2, 2)  # [P, F, L]: 12 subjects, (1, time), 2 latents
    random = summary.random_effects
    assert list(random["column"]) == ["(Intercept)", "(Intercept)", "time", "time"]
    np.testing.assert_allclose(random["tau"], tau.reshape(-1))
    np.testing.assert_allclose(random["sd_levels"], levels.std(axis=0, ddof=1).reshape(-1))
    assert (random["n_levels"] == 12).all()


def test_olmm_summary_carries_the_models_parameters(data):
    model = _fit(data, "olmm", prior={"q_A": "gaussian"})
    prior = model.model.prior
    summary = summarise(model)
    _check_effects(summary, prior.effects, tau=_np(prior.log_tau_random[0].exp()),
                   sd=_np(prior.effects.shared_log_std.exp()))
    noise = dict(zip(summary.noise["parameter"], summary.noise["value"]))
    np.testing.assert_allclose([noise["sigma_z[z1]"], noise["sigma_z[z2]"]], np.sqrt(_np(prior.sigma_z2)))
    variance = _np(model.model.likelihood.variance)
    assert noise["likelihood variance (max)"] == pytest.approx(variance.max())
    assert summary.notes == []  # the ELBO's q(A) is a posterior approximation: nothing to add


def test_olmm_point_estimate_has_no_sd_and_the_fixed_tau(data):
    model = _fit(data, "olmm", prior={"q_A": "point", "tau_random": 0.7})
    summary = summarise(model)
    _check_effects(summary, model.model.prior.effects, tau=np.full((2, 2), 0.7), sd=np.full((2, 2), np.nan))
    assert "point estimates of A" in str(summary)


def test_slmm_summary_carries_the_models_parameters(data):
    model = _fit(data, "slmm")
    prior = model.model.prior
    summary = summarise(model)
    _check_effects(summary, prior.effects, tau=_np(prior.log_tau_random[0].exp()), sd=np.full((2, 2), np.nan))
    noise = dict(zip(summary.noise["parameter"], summary.noise["value"]))
    assert noise["sigma_eps"] == pytest.approx(float(np.sqrt(_np(prior.sigma_eps2))))


def test_gsnn_olmm_gets_the_objectives_note_on_q_A(data):
    model = _fit(data, "olmm", objective="gsnn", gsnn_samples=2)
    summary = summarise(model)
    assert summary.notes[0] == objective_kind("gsnn").q_A_note
    assert "Note: trained by GSNN" in str(summary)


@dataclass
class _NoOptions:
    pass


class _DescribedPrior(StandardNormalPrior):
    """N(0, s² I) with a learned scale s, which it reports."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.log_scale = nn.Parameter(torch.tensor(-0.25))

    def describe(self, design, objective) -> PriorDescription:
        return PriorDescription(noise=[("toy_scale", float(self.log_scale.detach().exp()))],
                                notes=[f"toy prior, trained by {objective.label}"])


class _SilentPrior(StandardNormalPrior):
    describe = Prior.describe  # the base class's: no description


@pytest.fixture
def toy_variants(monkeypatch):
    variants.names()  # the library's variants registered, then the registry as it was, afterwards
    monkeypatch.setattr(variants._REGISTRY, "_entries", dict(variants._REGISTRY._entries))
    variants.register(variants.Variant("toy_described", _NoOptions, lambda o, s, l: _DescribedPrior(l)))
    variants.register(variants.Variant("toy_silent", _NoOptions, lambda o, s, l: _SilentPrior(l)))


def test_a_registered_toy_prior_gets_its_description_rendered(data, toy_variants):
    model = _fit(data, "toy_described", design="~ time")
    text = str(summarise(model))
    scale = float(model.model.prior.log_scale.exp())
    assert re.search(rf"^toy_scale +{scale:.4g}$", text, flags=re.M)  # the noise table, as the prior said
    assert "Note: toy prior, trained by ELBO" in text


def test_a_prior_without_describe_is_said_so(data, toy_variants):
    summary = summarise(_fit(data, "toy_silent", design="~ time"))
    assert summary.fixed_effects.empty and summary.random_effects.empty
    assert any("_SilentPrior) gives no description" in note for note in summary.notes)
    assert "gives no description" in str(summary)
