"""Likelihoods (SPEC 2.1): values against torch.distributions and the hand formula, masking."""

import math

import numpy as np

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from lmmvae.errors import ConfigError
from lmmvae.model.likelihoods import TABULAR_START_FRACTION, BernoulliLikelihood, GaussianLikelihood, build_likelihood

B, D, S = 5, 7, 3


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(B, D, generator=g)  # [B, D]
    mask = (torch.rand(B, D, generator=g) > 0.3).float()  # [B, D]
    mask[0] = 0.0  # a row with nothing observed
    params = torch.randn(S, B, D, generator=g)  # [S, B, D]
    return y, mask, params


def _with_garbage(y, mask):
    bad = y.clone()
    bad[mask == 0] = float("nan")
    bad[(mask == 0) & (torch.arange(D) % 2 == 0)] = float("inf")
    return bad


def test_gaussian_matches_torch_normal_on_observed_entries(data):
    y, mask, params = data
    lik = build_likelihood("gaussian", D)
    with torch.no_grad():
        lik.log_var.copy_(torch.linspace(-1.0, 1.0, D))
    expected = (Normal(params, lik.variance.sqrt()).log_prob(y) * mask).sum(-1)  # [S, B]
    got = lik.log_prob(y, mask, params)
    assert got.shape == (S, B)
    torch.testing.assert_close(got, expected)
    assert torch.all(got[:, 0] == 0)  # nothing observed in row 0


def test_gaussian_hand_formula():
    lik = GaussianLikelihood(2, learn_variance=False, init_variance=2.0, min_variance=0.0)
    y = torch.tensor([[1.0, 3.0]])
    mask = torch.tensor([[1.0, 0.0]])
    params = torch.tensor([[0.0, -50.0]])
    # observed: y=1, mu=0, var=2: -0.5*(log(2π) + log 2 + 1/2); second entry missing
    hand = -0.5 * (math.log(2 * math.pi) + math.log(2.0) + 0.5)
    assert lik.log_prob(y, mask, params).item() == pytest.approx(hand, rel=1e-6)
    assert "log_var" not in dict(lik.named_parameters())  # fixed variance


def test_gaussian_bounded_mean_is_sigmoid(data):
    y, mask, params = data
    lik = build_likelihood("gaussian", D, bounded=True, init_variance=0.1)
    torch.testing.assert_close(lik.mean(params), torch.sigmoid(params))
    expected = (Normal(torch.sigmoid(params), lik.variance.sqrt()).log_prob(y) * mask).sum(-1)
    torch.testing.assert_close(lik.log_prob(y, mask, params), expected)


def test_bernoulli_matches_torch_bernoulli(data):
    _, mask, params = data
    y = (torch.rand(B, D, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    lik = build_likelihood("bernoulli", D)
    expected = (Bernoulli(logits=params).log_prob(y) * mask).sum(-1)
    torch.testing.assert_close(lik.log_prob(y, mask, params), expected)
    torch.testing.assert_close(lik.mean(params), torch.sigmoid(params))


def test_bernoulli_soft_targets_are_cross_entropy():
    lik = BernoulliLikelihood(1)
    y, mask, logit = torch.tensor([[0.25]]), torch.ones(1, 1), torch.tensor([[0.4]])
    p = torch.sigmoid(logit)
    hand = 0.25 * torch.log(p) + 0.75 * torch.log(1 - p)
    torch.testing.assert_close(lik.log_prob(y, mask, logit), hand.sum(-1))


@pytest.mark.parametrize("name", ["gaussian", "bernoulli"])
def test_garbage_in_missing_entries_changes_nothing(data, name):
    y, mask, params = data
    if name == "bernoulli":
        y = torch.sigmoid(y)
    lik = build_likelihood(name, D)
    params = params.clone().requires_grad_(True)
    clean = lik.log_prob(y, mask, params)
    (grad_clean,) = torch.autograd.grad(clean.sum(), params)
    dirty = lik.log_prob(_with_garbage(y, mask), mask, params)
    (grad_dirty,) = torch.autograd.grad(dirty.sum(), params)
    torch.testing.assert_close(dirty, clean)
    torch.testing.assert_close(grad_dirty, grad_clean)
    assert torch.all(grad_dirty[:, mask == 0] == 0)  # missing entries get no gradient


def test_learned_variance_gets_gradient(data):
    y, mask, params = data
    lik = build_likelihood("gaussian", D)
    lik.log_prob(y, mask, params).sum().backward()
    assert lik.log_var.grad is not None and torch.all(torch.isfinite(lik.log_var.grad))


def test_unknown_name_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="valid: bernoulli, gaussian"):
        build_likelihood("poisson", D)
    with pytest.raises(ConfigError, match="unknown option"):
        build_likelihood("gaussian", D, bounds=True)


@pytest.mark.parametrize("name,options", [("gaussian", {}), ("gaussian", {"bounded": True}), ("bernoulli", {})])
def test_initial_params_invert_the_mean_at_the_observed_training_mean(name, options):
    """The model starts at the average training observation (SPEC 7): mean(initial_params) equals
    each feature's observed mean; missing entries do not count."""
    rng = np.random.default_rng(0)
    y = rng.uniform(0.05, 0.95, size=(50, 4)).astype(np.float32)
    mask = (rng.random((50, 4)) > 0.3).astype(np.uint8)
    y_garbage = np.where(mask == 1, y, 7.0)  # what sits in missing entries never counts
    lik = build_likelihood(name, 4, **options)
    lik.initialise(y_garbage, mask)
    expected = (y * mask).sum(0) / mask.sum(0)
    np.testing.assert_allclose(lik.mean(lik.initial_params(y_garbage, mask)).numpy(), expected, rtol=1e-5)
    if name == "gaussian":  # images: at the observed per-feature variance; tabular: 1 % of it
        var = np.array([np.var(y[mask[:, d] == 1, d], ddof=1) for d in range(4)])
        share = 1.0 if options.get("bounded") else TABULAR_START_FRACTION
        assert share == 1.0 or share < 0.1  # the tabular start sits well below the data's variance
        np.testing.assert_allclose(lik.variance.detach().numpy(), np.maximum(share * var, 1e-3), rtol=1e-4)


def test_tabular_variance_starts_below_the_data_and_images_at_it():
    """Tabular features (unbounded) start at TABULAR_START_FRACTION of their observed variance, so
    the ELBO does not begin with the noise explaining everything; images (bounded) at the observed
    variance (SPEC 7); a configured init_variance wins over both."""
    rng = np.random.default_rng(1)
    scale = np.array([0.5, 1.0, 2.0, 4.0], dtype=np.float32)
    y = (rng.normal(size=(400, 4)) * scale).astype(np.float32)  # observed variances 0.25 .. 16
    mask = np.ones_like(y, dtype=np.uint8)
    lik = build_likelihood("gaussian", 4)
    lik.initialise(y, mask)
    observed = y.var(0, ddof=1)
    np.testing.assert_allclose(lik.variance.detach().numpy(), TABULAR_START_FRACTION * observed, rtol=1e-4)
    images = rng.uniform(0.0, 1.0, size=(400, 4)).astype(np.float32)
    lik = build_likelihood("gaussian", 4, bounded=True)
    lik.initialise(images, mask)
    np.testing.assert_allclose(lik.variance.detach().numpy(), images.var(0, ddof=1), rtol=1e-4)
    lik = build_likelihood("gaussian", 4, init_variance=0.3)
    lik.initialise(y, mask)
    np.testing.assert_allclose(lik.variance.detach().numpy(), 0.3, rtol=1e-5)
    lik = build_likelihood("gaussian", 4, init_fraction=0.5)
    lik.initialise(y, mask)
    np.testing.assert_allclose(lik.variance.detach().numpy(), 0.5 * observed, rtol=1e-4)


@pytest.mark.parametrize("objective,fraction", [("elbo", TABULAR_START_FRACTION), ("gsnn", 1.0)])
def test_elbo_models_start_tabular_variances_small_and_gsnn_models_at_the_data(objective, fraction):
    """The small start guards the ELBO's KL against a collapsed latent; GSNN has no such KL (SPEC 4)
    and starts at the observed variance. Checked on the model fit builds (1 epoch, 2 Adam steps:
    a log-variance moves by about 2 x lr = 0.002)."""
    import lmmvae
    from lmmvae.data.h5 import Covariate, LongitudinalData

    rng = np.random.default_rng(2)
    subject = np.repeat(np.arange(20), 5)
    y = (rng.normal(size=(100, 3)) * [0.5, 1.0, 2.0]).astype(np.float32)
    split = np.where(np.arange(100) % 5 == 4, 1, 0)
    data = LongitudinalData(y=y, mask=np.ones_like(y, dtype=np.uint8), split=split,
                            covariates={"t": Covariate(np.tile(np.arange(5.0), 20), "time"),
                                        "id": Covariate(subject, "id")})
    model = lmmvae.fit(data, progress=False, variant="olmm", objective=objective, design="~ t + (1 | id)",
                       latent_dim=2, network="mlp", epochs=1, batch_size=64)
    observed = y[split == 0].var(0, ddof=1)
    np.testing.assert_allclose(model.model.likelihood.variance.detach().numpy(), fraction * observed, rtol=0.01)


def test_config_checks_likelihood_options_at_load():
    from lmmvae.training.checks import config_from_dict, likelihood_options

    with pytest.raises(ConfigError) as err:
        config_from_dict({"likelihood": "bernoulli", "likelihood_options": {"bounded": True}}, where="m.yaml")
    assert str(err.value) == "m.yaml: likelihood 'bernoulli': unknown option(s) bounded; valid: none"
    with pytest.raises(ConfigError, match="option bounded must be true or false, got 'yes'"):
        config_from_dict({"likelihood_options": {"bounded": "yes"}})
    options = likelihood_options(config_from_dict({"likelihood_options": {"learn_variance": False}}))
    assert options.learn_variance is False and options.init_variance is None and options.min_variance == 1e-4
    assert not any(p.requires_grad for p in build_likelihood("gaussian", 3, learn_variance=False).parameters())
