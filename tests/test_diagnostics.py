"""lmmvae.answers.diagnostics: active latent dimensions and the share of latent variance the covariates
explain, checked against hand-computed values; a collapsed model is flagged in the summary."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import lmmvae
from lmmvae.answers.diagnostics import collapse_metrics, diagnose, training_batch
from lmmvae.answers.summary import summarise
from simulate import simulate_lmm

DESIGN = "~ time + (1 | id)"


@pytest.fixture(scope="module")
def data():
    return simulate_lmm(n_subjects=12, n_times=5, n_future=1)


def _fit(data, **settings):
    return lmmvae.fit(data, **{"variant": "olmm", "design": DESIGN, "latent_dim": 2, "epochs": 1,
                               "progress": False, **settings})


class _ConstantEncoder(nn.Module):
    """An encoder that ignores ``y``: ``q(z | y) = N(mean, 1)`` for every row."""

    def __init__(self, mean: float, latent_dim: int):
        super().__init__()
        self.mean, self.latent_dim = mean, latent_dim

    def forward(self, y, condition=None):
        shape = (y.shape[0], self.latent_dim)
        return torch.full(shape, self.mean), torch.ones(shape)


def _set_effects(model, time_coef: float, sigma: float):
    """``A``: 0 except the time column's coefficient on z1; ``q(A)`` a near point mass; σ fixed."""
    prior = model.model.prior
    with torch.no_grad():
        prior.effects.shared_mean.zero_()
        prior.effects.shared_mean[1, 0] = time_coef  # columns: (Intercept), time
        for table in prior.effects.random_mean:
            table.zero_()
        if prior.effects.gaussian:
            prior.effects.shared_log_std.fill_(-20.0)
            for table in prior.effects.random_log_std:
                table.fill_(-20.0)
        name = "log_sigma_z" if hasattr(prior, "log_sigma_z") else "log_sigma_eps"
        getattr(prior, name).fill_(math.log(sigma))


def test_an_encoder_that_outputs_the_prior_is_flagged_collapsed(data):
    model = _fit(data)
    _set_effects(model, 0.0, 1.0)  # p(z | x) = N(0, 1): A = 0, σ_z = 1
    model.model.encoder = _ConstantEncoder(0.0, 2)  # q(z | y) = N(0, 1) = the prior
    found = diagnose(model, data)
    assert np.allclose(found.kl, 0.0, atol=1e-6) and found.active_dims == 0
    assert found.explained_share == pytest.approx(0.0, abs=1e-12)
    summary = summarise(model, data=data)
    assert summary.collapse["collapsed"] and "looks collapsed" in str(summary)
    assert "0 of 2 latent dimensions are active" in str(summary)
    assert summary.to_dict()["collapse"]["active_dims"] == 0


def test_kl_of_an_informative_encoder_is_the_hand_computed_value(data):
    """q = N(1, 1) against p = N(0, 1): KL = ½ (1 + 1 − 1 − 0) = 0.5 nats per dimension."""
    model = _fit(data)
    _set_effects(model, 0.0, 1.0)
    model.model.encoder = _ConstantEncoder(1.0, 2)
    found = diagnose(model, data)
    assert np.allclose(found.kl, 0.5, atol=1e-6) and found.active_dims == 2


@pytest.mark.parametrize("variant,sigma", [("olmm", 1.0), ("slmm", 2.0)])
def test_strong_fixed_effect_has_the_hand_computed_explained_share(data, variant, sigma):
    """``A^T x`` = 3·time on z1, 0 on z2: share_1 = 9 v / (9 v + σ²) with v the variance of the
    (standardised) time column over training rows; σ² = σ_z² (oLMM) or σ_ε² (sLMM)."""
    model = _fit(data, variant=variant)
    _set_effects(model, 3.0, sigma)
    time = training_batch(model, data).x.shared[:, 1].double().numpy()
    v = time.var()
    expected = np.array([9 * v / (9 * v + sigma ** 2), 0.0])
    found = diagnose(model, data)
    np.testing.assert_allclose(found.explained, expected, rtol=1e-5, atol=1e-9)
    assert found.explained_share == pytest.approx(expected.mean(), rel=1e-5)
    assert expected[0] > 0.6  # a strong effect explains most of the latent variance
    metrics = collapse_metrics(model, data)
    assert metrics["explained_share"] == pytest.approx(expected.mean(), rel=1e-5)
    assert set(metrics) == {"active_dims", "explained_share"}


def test_gsnn_has_no_active_dims_and_says_what_q_A_is(data):
    model = _fit(data, objective="gsnn")
    narrow = str(summarise(model, data=data))  # q(A) sd 0.05 vs σ_z 0.1 at the start: ratio 0.25
    assert "y enters only through the decoder likelihood" in narrow and "var(A)/sigma_z^2" not in narrow
    assert "no encoder after GSNN" in narrow and "active_dims" not in collapse_metrics(model, data)
    with torch.no_grad():
        model.model.prior.effects.shared_log_std.fill_(math.log(1.0))  # var(A) = 100 σ_z²
        model.model.prior.log_sigma_z.fill_(math.log(0.1))
    assert "var(A)/sigma_z^2 is 100 on average" in str(summarise(model, data=data))


def test_constant_design_explains_nothing_and_is_not_flagged_for_it(data):
    model = _fit(data, design="~ 1")
    assert diagnose(model, data).explained is None
