"""The estimators behind the verdicts, against exact values of a linear-Gaussian decoder:

* GSNN is a lower bound on ``log p(Y)`` (SPEC 4): ``A ~ q(A)`` drawn once per step, shared by the
  batch's rows; the old per-row draw of ``A`` exceeds the exact value when ``q(A)`` is wide;
* the importance-sampled NLL (SPEC 6) matches the exact marginal ``p(y | x)`` within its Monte
  Carlo standard error, and is stable in the number of draws where prior sampling is not.

With ``y = W z + b + N(0, σ² I)`` and ``z_i = A^T x_i + σ_z ε_i``, ``A ~ N(0, τ²)`` entry-wise, the
rows are jointly Gaussian: ``Cov(z_il, z_jl) = x_i^T T x_j + σ_z² δ_ij`` (``T = diag τ_q²``), so
``Cov(vec Y) = K ⊗ W W^T + σ² I``.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lmmvae.answers.metrics import log_mean_exp
from lmmvae.data.batch import DesignBatch
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.loader import TensorData
from lmmvae.model.design import Design
from lmmvae.model.latent import LatentVariableModel
from lmmvae.model.likelihoods import GaussianLikelihood
from lmmvae.model.priors.olmm import OLMMOptions, OLMMPrior
from lmmvae.training.objectives import gsnn

SIGMA_Z, NOISE_VAR, TAU = 0.2, 0.3, 1.0
W = torch.tensor([[1.0], [0.5]], dtype=torch.float64)  # [D=2, L=1]
B = torch.tensor([0.2, -0.1], dtype=torch.float64)  # [D]


class LinearDecoder(nn.Module):
    """``g(z) = W z + b``, fixed."""

    def forward(self, z, cond=None):
        return z @ W.T.to(z.dtype) + B.to(z.dtype)


class NoEncoder(nn.Module):
    def forward(self, y, cond=None):
        raise AssertionError("GSNN must not read the encoder")


def _two_subjects(y: np.ndarray):
    """Two subjects x three rows, design ``~ 1 + (1 | id)``: a shared and a random intercept."""
    subject = np.repeat([0, 1], 3)
    covariates = {"id": Covariate(subject, "id", levels=["a", "b"])}
    data = LongitudinalData(y=y.astype(np.float32), mask=np.ones_like(y, np.uint8),
                            split=np.zeros(6, np.uint8), covariates=covariates)
    design = Design("~ 1 + (1 | id)").fit(covariates)
    return data, design


def _olmm_model(data, design, q_std: float) -> tuple[LatentVariableModel, torch.Tensor]:
    """oLMM with a linear decoder; ``q(A) = N(M, q_std²)`` entry-wise (M fixed below)."""
    opts = OLMMOptions(q_A="gaussian", sigma_z=SIGMA_Z, learn_sigma_z=False, tau_shared=TAU, tau_random=TAU)
    prior = OLMMPrior(1, design.n_shared, [(2, 1)], [np.array([3, 3])], opts)
    with torch.no_grad():
        prior.effects.shared_mean.fill_(0.4)
        prior.effects.random_mean[0].copy_(torch.tensor([[0.5], [-0.3]]))
        prior.effects.shared_log_std.fill_(math.log(q_std))
        prior.effects.random_log_std[0].fill_(math.log(q_std))
    likelihood = GaussianLikelihood(2, learn_variance=False, init_variance=NOISE_VAR + 1e-4)
    model = LatentVariableModel(NoEncoder(), LinearDecoder(), likelihood, prior)
    x = torch.as_tensor(design.transform(data.covariates).dense(), dtype=torch.float64)  # [N, Q=3]
    return model, x


def _exact_log_p(y: torch.Tensor, x: torch.Tensor) -> float:
    """``log p(Y)`` with ``A`` integrated out under ``p(A)``: one Gaussian over all N·D entries."""
    n, d = y.shape
    k = TAU**2 * x @ x.T + SIGMA_Z**2 * torch.eye(n, dtype=x.dtype)  # [N, N]
    cov = torch.kron(k, W @ W.T) + NOISE_VAR * torch.eye(n * d, dtype=x.dtype)  # [N*D, N*D]
    dist = torch.distributions.MultivariateNormal(B.repeat(n), cov)
    return float(dist.log_prob(y.reshape(-1)))


def _per_row_bound_terms(model, x, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row ``x^T M`` [N], variance of ``x^T a`` under ``q(A)`` [N], and ``KL(q(A) || p(A))``."""
    effects = model.prior.effects
    m = torch.cat([effects.shared_mean, effects.random_mean[0]])[:, 0].detach().double()  # [Q]
    s2 = torch.cat([effects.shared_log_std, effects.random_log_std[0]])[:, 0].detach().double().exp().square()
    kl = 0.5 * (s2 / TAU**2 + m.square() / TAU**2 - 1 - (s2 / TAU**2).log()).sum()
    return x @ m, x.square() @ s2, kl


def _bound_analytic(model, x, y) -> float:
    """``E_q(A) Σ_i log p(y_i | A) − KL(q(A) || p(A))`` (SPEC 4's bound, ``S → ∞``): with
    ``C = σ_z² W W^T + σ² I``, ``E log N(y | W a^T x + b, C) = log N(y | W m + b, C) − ½ u W^T C⁻¹ W``."""
    m, u, kl = _per_row_bound_terms(model, x, y)
    c = SIGMA_Z**2 * W @ W.T + NOISE_VAR * torch.eye(2, dtype=x.dtype)
    dist = torch.distributions.MultivariateNormal(m[:, None] * W[:, 0] + B, c)
    quad = (W.T @ torch.linalg.solve(c, W))[0, 0]
    return float((dist.log_prob(y) - 0.5 * u * quad).sum() - kl)


def _old_per_row_value(model, x, y) -> float:
    """The old estimator's limit: each row's ``A`` drawn on its own, ``Σ_i log E_q(A) p(y_i | A) − KL``."""
    m, u, kl = _per_row_bound_terms(model, x, y)
    cov = (SIGMA_Z**2 + u)[:, None, None] * (W @ W.T) + NOISE_VAR * torch.eye(2, dtype=x.dtype)  # [N, D, D]
    dist = torch.distributions.MultivariateNormal(m[:, None] * W[:, 0] + B, cov)
    return float(dist.log_prob(y).sum() - kl)


# rows of one subject that disagree: the joint model expects them to move together
Y_DISAGREE = np.array([[1.8, 0.8], [-1.2, -0.7], [0.9, 0.3], [-1.5, -0.6], [1.1, 0.6], [-0.4, -0.3]])


def test_gsnn_shares_one_draw_of_A_per_level_across_rows():
    """SPEC 4: rows of one subject (same ``x``) get the same ``A^T x``; the draw changes per step."""
    data, design = _two_subjects(Y_DISAGREE)
    model, _ = _olmm_model(data, design, q_std=2.0)
    batch = TensorData(data, design, None, {"id": ["a", "b"]}).batch(torch.arange(6))
    torch.manual_seed(0)
    mean = torch.stack([model.prior.effects.sample(batch.x) for _ in range(4000)])[..., 0]  # [steps, N]
    assert torch.equal(mean[:, 0], mean[:, 1]) and torch.equal(mean[:, 3], mean[:, 5])
    # across steps: x^T A ~ N(x^T M, (x⊙x)^T S²) = N(0.4 + 0.5, 4 + 4) for subject a
    assert mean[:, 0].mean().item() == pytest.approx(0.9, abs=4 * math.sqrt(8 / 4000))
    assert mean[:, 0].var().item() == pytest.approx(8.0, rel=0.1)
    z = model.prior.sample(batch, 3)  # [S, N, L]
    assert (z[:, 0] - z[:, 1]).abs().max() > 0  # ε differs per row and draw


def test_gsnn_is_a_lower_bound_and_the_per_row_draw_is_not():
    """The GSNN loss (unscaled sum, full batch) averaged over steps is ≤ exact ``log p(Y)``, and
    equals the analytic bound; drawing ``A`` per row gives a value above the exact one."""
    data, design = _two_subjects(Y_DISAGREE)
    model, x = _olmm_model(data, design, q_std=2.0)  # wide q(A): var(A) = 4 τ²
    y = torch.as_tensor(Y_DISAGREE)
    batch = TensorData(data, design, None, {"id": ["a", "b"]}).batch(torch.arange(6), scale=1.0)
    exact, bound = _exact_log_p(y, x), _bound_analytic(model, x, y)
    torch.manual_seed(1)
    with torch.no_grad():
        values = torch.tensor([-6 * gsnn(model, batch, n_total=6, n_samples=100).loss.item()
                               for _ in range(3000)])
        old = []
        for _ in range(300):  # the old estimator: each row's z from its own marginal (A per row)
            z = model.prior.predict(batch).rsample((200,))  # [S, N, L]
            old.append(log_mean_exp(model.log_likelihood(z, batch), 0).sum() - model.prior.prior_kl(batch).local
                       - model.prior.prior_kl(batch).global_)
    mc, se = values.mean().item(), values.std().item() / math.sqrt(values.numel())
    old_value = torch.stack(old).mean().item()
    assert bound < exact
    # the estimator's mean is the analytic bound, less the Jensen gap of the inner S = 100 draws of ε
    assert bound - 4 * se - 3.0 <= mc <= bound + 4 * se
    assert mc + 4 * se < exact
    assert old_value == pytest.approx(_old_per_row_value(model, x, y), abs=0.5)
    assert old_value > exact + 3.0  # not a bound: the per-row draw rewards the wide q(A)


# -- the NLL (SPEC 6) and the predictive mean's Monte Carlo error (SPEC 2.4) --------------------

W3 = torch.tensor([[1.0, 0.0], [0.5, 1.0], [-0.3, 0.8]])  # [D=3, L=2]
B3 = torch.tensor([0.1, -0.2, 0.3])


class LinearDecoder3(nn.Module):
    def forward(self, z, cond=None):
        return z @ W3.T + B3


class RoughEncoder(nn.Module):
    """``q(z | y)``: a shrunk least-squares inverse of the decoder, wider than the posterior."""

    def forward(self, y, cond=None):
        mean = 0.9 * torch.linalg.lstsq(W3, (y - B3).T).solution.T  # [B, L]
        return mean, torch.full_like(mean, 0.05)


def _fitted_linear(noise_var: float, objective: str = "elbo", n_samples: int = 1000, seed: int = 0):
    """A fitted-model stand-in: oLMM prior ``z ~ N(x^T M, σ_z² + (x⊙x)^T S²)`` on ``~ t``, linear
    decoder, Gaussian noise ``noise_var``; 24 rows drawn from the model itself."""
    from types import SimpleNamespace

    from lmmvae.config import ModelConfig

    rng = np.random.default_rng(3)
    t = rng.uniform(0, 2, 24)
    covariates = {"t": Covariate(t, "continuous")}
    design = Design("~ t").fit(covariates)
    prior = OLMMPrior(2, design.n_shared, [], [], OLMMOptions(q_A="gaussian", sigma_z=0.8, learn_sigma_z=False))
    with torch.no_grad():
        prior.effects.shared_mean.copy_(torch.tensor([[0.3, -0.5], [0.7, 0.4]]))
        prior.effects.shared_log_std.fill_(math.log(0.3))
    likelihood = GaussianLikelihood(3, learn_variance=False, init_variance=noise_var + 1e-4)
    model = LatentVariableModel(RoughEncoder(), LinearDecoder3(), likelihood, prior).eval()
    x = DesignBatch.from_matrix(design.transform(covariates))
    with torch.no_grad():
        dist = prior.predict(SimpleNamespace(x=x))
        gen = torch.Generator().manual_seed(3)  # the same rows on every call
        z = dist.mean + dist.stddev * torch.randn(24, 2, generator=gen)
        y = (z @ W3.T + B3 + math.sqrt(noise_var) * torch.randn(24, 3, generator=gen)).numpy()
    data = LongitudinalData(y=y, mask=np.ones_like(y, np.uint8), split=np.full(24, 2, np.uint8),
                            covariates=covariates)
    config = ModelConfig(variant="olmm", objective=objective, latent_dim=2, nll_samples=n_samples,
                         predict_samples=n_samples)
    fitted = SimpleNamespace(model=model, config=config, info={"seed": seed})
    return fitted, TensorData(data, design, None, {}), data


def _exact_nll(fitted, tensors) -> np.ndarray:
    """``−log N(y_i | W m_i + b, W diag(v_i) W^T + σ² I)``, the exact marginal per row: [N]."""
    batch = tensors.batch(tensors.indices(None))
    with torch.no_grad():
        dist = fitted.model.prior.predict(batch)
        cov = W3 @ torch.diag_embed(dist.variance) @ W3.T + fitted.model.likelihood.variance.diag()
        marginal = torch.distributions.MultivariateNormal(dist.mean @ W3.T + B3, cov)
        return -marginal.log_prob(batch.y).double().numpy()


def test_importance_sampled_nll_matches_the_exact_marginal():
    from lmmvae.answers.predict import nll_rows

    torch.manual_seed(0)
    fitted, tensors, _ = _fitted_linear(noise_var=0.01)
    exact = _exact_nll(fitted, tensors)
    nll = nll_rows(fitted, tensors, tensors.indices(None))
    z = (nll["nll"] - exact) / nll["nll_se"]
    assert np.abs(z).max() < 5, z  # every row within 5 of its own s.e.
    mean_se = np.sqrt((nll["nll_se"] ** 2).sum()) / exact.size
    assert abs(nll["nll"].mean() - exact.mean()) < 4 * mean_se
    assert 1e-4 < mean_se < 0.05  # a real, small error bar


def test_importance_sampling_is_stable_where_prior_sampling_is_biased():
    """Sharp likelihood (σ² = 0.01 against a latent spread ~1): IS at 500 and 5,000 draws agree
    within 3 s.e.; prior sampling at 20 draws is far above the exact value, and its first-half
    estimate differs from the full one (it has not stopped moving)."""
    from lmmvae.answers.predict import nll_rows

    torch.manual_seed(0)
    means = {}
    for n in (500, 5000):
        fitted, tensors, _ = _fitted_linear(noise_var=0.01, n_samples=n)
        nll = nll_rows(fitted, tensors, tensors.indices(None))
        means[n] = (nll["nll"].mean(), np.sqrt((nll["nll_se"] ** 2).sum()) / nll["nll"].size)
    exact = _exact_nll(fitted, tensors).mean()
    assert abs(means[500][0] - means[5000][0]) < 3 * math.hypot(means[500][1], means[5000][1])
    assert abs(means[5000][0] - exact) < 4 * means[5000][1]
    gsnn_fitted, tensors, _ = _fitted_linear(noise_var=0.01, objective="gsnn", n_samples=20)
    prior_sampled = nll_rows(gsnn_fitted, tensors, tensors.indices(None))
    assert prior_sampled["nll"].mean() > exact + 3.0  # biased upwards by nats
    assert prior_sampled["nll_half"].mean() > prior_sampled["nll"].mean() + 0.3  # still moving


def test_mse_mc_error_matches_the_spread_over_seeds():
    """``mse_test_mc_se`` at 20 draws against the root-mean-square difference between 20-draw MSEs
    (40 seeds) and a 20,000-draw reference: the same size (SPEC 2.4)."""
    from lmmvae.answers.metrics import mse, mse_mc_error
    from lmmvae.answers.predict import predict_rows

    torch.manual_seed(0)
    fitted, tensors, data = _fitted_linear(noise_var=0.05, n_samples=20_000)
    mask = data.mask
    reference = mse(data.y, predict_rows(fitted, tensors, tensors.indices(None))["y_pred"], mask)
    errors, reported = [], []
    for seed in range(40):
        fitted, tensors, _ = _fitted_linear(noise_var=0.05, n_samples=20, seed=seed)
        pred = predict_rows(fitted, tensors, tensors.indices(None), mc_error=True)
        errors.append(mse(data.y, pred["y_pred"], mask) - reference)
        reported.append(mse_mc_error(data.y, pred["y_pred"], pred["y_pred_mc_var"], mask))
    actual = math.sqrt(np.mean(np.square(errors)))
    assert 0.6 < np.mean(reported) / actual < 1.6, (np.mean(reported), actual)
    assert np.mean(errors) > 0  # MC noise adds to the squared error: a bias, not only a spread


def test_tables_show_the_nll_with_its_monte_carlo_error():
    """SPEC 6: an estimated NLL carries ``(MC ± sqrt(Σ se_s²)/n)``; an exact one (no ``_se`` rows) none."""
    import pandas as pd

    from lmmvae.reporting.tables import build_table, to_markdown

    rows = []
    for model, value, se in (("olmm", 5.0, 0.03), ("olmm", 5.4, 0.04), ("mixedlm", 6.0, None), ("mixedlm", 6.2, None)):
        seed = len([r for r in rows if r["model"] == model and r["metric"] == "nll_test"])
        common = dict(dataset="d", model=model, base_model=model, label=model, sweep_value=None, seed=seed,
                      seed_b=pd.NA)
        rows.append({**common, "metric": "nll_test", "value": value})
        if se is not None:
            rows.append({**common, "metric": "nll_test_se", "value": se})
    table = build_table(pd.DataFrame(rows), {"dataset": "d", "models": ["olmm", "mixedlm"],
                                             "metrics": {"nll_test": "Test NLL"}})
    assert table.cells[0][0].mc_se == pytest.approx(math.sqrt(0.03**2 + 0.04**2) / 2)
    text = to_markdown(table)
    assert "5.20 ± 0.28 (MC ± 0.03)" in text and "6.10 ± 0.14 |" in text


def test_tables_flag_an_nll_that_still_moves_with_the_draw_count():
    """SPEC 6: |first-half − full| > 3 MC s.e. in a run flags the cell ``still moving in k/n``; a drift
    within the s.e. does not."""
    import pandas as pd

    from lmmvae.reporting.tables import build_table, to_markdown

    rows = []
    for seed, (value, half, se) in enumerate(((5.0, 5.02, 0.01), (5.4, 5.8, 0.04), (5.2, 5.21, 0.01))):
        common = dict(dataset="d", model="olmm", base_model="olmm", label="olmm", sweep_value=None, seed=seed,
                      seed_b=pd.NA)
        rows += [{**common, "metric": "nll_test", "value": value}, {**common, "metric": "nll_test_se", "value": se},
                 {**common, "metric": "nll_test_half", "value": half}]
    spec = {"dataset": "d", "models": ["olmm"], "metrics": {"nll_test": "Test NLL"}}
    table = build_table(pd.DataFrame(rows), spec)
    assert table.cells[0][0].moving == (1, 3)  # seed 1: 0.4 > 3 x 0.04; seed 0: 0.02 < 0.03
    assert "still moving in 1/3)" in to_markdown(table)
    steady = [r if r["metric"] != "nll_test_half" or r["seed"] != 1 else {**r, "value": 5.45} for r in rows]
    text = to_markdown(build_table(pd.DataFrame(steady), spec))
    assert "still moving" not in text and "(MC ±" in text
