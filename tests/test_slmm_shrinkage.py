"""sLMM-VAE's random-effect rows of A with a Gaussian q and learned τ_r (docs/model.md 3.1, 3.3,
3.4, 4): the KL against Monte Carlo, the latent predictive variance against draws of A, one draw
of A per GSNN step, shrinkage of unsupported subject slopes and recovery of real ones on a
linear-Gaussian model whose ELBO is analytic, and the run directory round-trip."""

import json
import math

import numpy as np
import pytest
import torch

import lmmvae
from lmmvae.data.batch import Batch, DesignBatch
from lmmvae.errors import ConfigError
from lmmvae.model.priors.base import Encoded
from lmmvae.model.priors.slmm import SLMMOptions, SLMMPrior
from simulate import simulate_lmm

L, P, F_COLS, Q_S = 2, 6, 2, 2


def design(levels: torch.Tensor, t: torch.Tensor) -> DesignBatch:
    """``x_i = [1, t | (1 + t | id)]``: shared intercept and time, random intercept and slope."""
    cols = torch.stack([torch.ones_like(t), t], dim=1)  # [B, 2]
    return DesignBatch(shared=cols, levels=[levels], values=[cols])


def batch_of(x: DesignBatch, subject: torch.Tensor, y: torch.Tensor | None = None) -> Batch:
    n = x.shared.shape[0]
    y = torch.zeros(n, L) if y is None else y
    return Batch(index=torch.arange(n), y=y, mask=torch.ones_like(y), x=x, covariates={}, subject=subject)


def make_prior(counts, gen, mode="gaussian", sigma_eps=1.0, learn_tau=True) -> SLMMPrior:
    opts = SLMMOptions(sigma_eps=sigma_eps, learn_sigma_eps=False, random_effects=mode, learn_tau=learn_tau)
    return SLMMPrior(L, Q_S, [(len(counts), F_COLS)], len(counts), opts, level_counts=[np.asarray(counts)])


def randomise(prior: SLMMPrior, gen) -> None:
    with torch.no_grad():
        for p in prior.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_kl_of_gaussian_random_rows_matches_monte_carlo(float64):
    """Σ over the training rows of the per-row shares = KL(q(A_r) ‖ N(0, τ_{f,l}²)) estimated by
    Monte Carlo from draws of A_r; the shared rows have no prior (SPEC 3.1)."""
    gen = torch.Generator().manual_seed(0)
    counts = [3, 1, 2, 4, 1, 2]
    prior = make_prior(counts, gen)
    randomise(prior, gen)
    levels = torch.repeat_interleave(torch.arange(P), torch.tensor(counts))
    x = design(levels, torch.randn(levels.shape[0], generator=gen))
    analytic = prior.prior_kl(batch_of(x, levels)).local
    m, s = prior.effects.random_mean[0], prior.effects.random_log_std[0].exp()  # [P, F*L]
    tau = prior.log_tau_random[0].exp()  # [F*L]
    draws = m + s * torch.randn(50_000, *m.shape, generator=gen)  # [S, P, F*L]
    log_q = torch.distributions.Normal(m, s).log_prob(draws).sum((1, 2))
    log_p = torch.distributions.Normal(0.0, tau).log_prob(draws).sum((1, 2))
    mc = log_q - log_p
    assert abs(float(analytic.detach()) - float(mc.mean())) < 4 * float(mc.std()) / math.sqrt(mc.shape[0])
    with torch.no_grad():
        prior.effects.shared_mean.add_(10.0)
    torch.testing.assert_close(prior.prior_kl(batch_of(x, levels)).local, analytic)


def test_latent_predictive_adds_the_variance_of_the_random_rows(float64):
    """predict (SPEC 3.4) and q(z) (SPEC 3.3): mean M^T x + ν_p, variance ω_p² + (x⊙x)^T(S⊙S),
    checked against draws of A ~ q(A); GSNN's sample draws A once per call, shared by the rows of
    a subject, so two rows of one subject at one time point coincide when σ_ε → 0 (SPEC 4)."""
    gen = torch.Generator().manual_seed(1)
    prior = make_prior([2] * P, gen)
    randomise(prior, gen)
    subject = torch.tensor([0, 0, 1, 1, 2, 3, 3, 4, 5, 5])
    t = torch.randn(subject.shape[0], generator=gen)
    x = design(subject, t)
    enc = Encoded(torch.randn(10, L, generator=gen), torch.rand(10, L, generator=gen) + 0.1)
    prior.condition(enc, batch_of(x, subject))
    pred = prior.predict(batch_of(x, subject))
    with torch.no_grad():
        draws = torch.stack([prior.effects.sample(x) for _ in range(4000)])  # [S, B, L]
    offset = prior.train_offset_mean[subject]
    se = (draws.var(0) / draws.shape[0]).sqrt()  # [B, L]
    assert ((pred.mean - draws.mean(0) - offset).abs() < 4 * se).all()
    torch.testing.assert_close(pred.variance, draws.var(0) + prior.train_offset_var[subject], atol=0,
                               rtol=4 * math.sqrt(2 / draws.shape[0]))
    q_z = prior.infer(enc, batch_of(x, subject), kl=False).q_z
    torch.testing.assert_close(q_z.variance, pred.variance)  # same subjects, same rows: same ω_p²
    assert float(prior.effects.variance(x).min()) > 0.01  # the check above is not vacuous
    tiny = make_prior([2] * P, gen, sigma_eps=1e-8)
    tiny.load_state_dict({**prior.state_dict(), "log_sigma_eps": torch.tensor(math.log(1e-8))})
    same_t = design(torch.tensor([0, 0, 1]), torch.tensor([0.3, 0.3, 0.3]))
    z = tiny.sample(batch_of(same_t, torch.tensor([0, 0, 1])), n_samples=4)  # [S, B, L]
    torch.testing.assert_close(z[:, 0], z[:, 1])  # one draw of the subject's row for the step
    assert (z[:, 0] - z[:, 2]).abs().min() > 1e-6  # another subject's row is another draw


def linear_gaussian_fit(slope_sd: float, mode: str, seed: int = 0, n_subjects: int = 40, n_visits: int = 8,
                        noise: float = 0.2, steps: int = 400) -> tuple[SLMMPrior, torch.Tensor]:
    """``y_i = z_i + noise``, ``z_i = β^T x_i + b_p + c_p t_i``; encoder ``(μ_i, s_i²) = (y_i, noise²)``
    and an identity decoder, so that the sLMM ELBO (SPEC 3.3) is analytic in ``q(z_i)``. Fits the
    prior's parameters on all rows (one batch, scale 1); returns the prior and the true slopes [P, L]."""
    gen = torch.Generator().manual_seed(seed)
    subject = torch.arange(n_subjects).repeat_interleave(n_visits)  # [N]
    t = torch.linspace(-1.0, 1.0, n_visits).repeat(n_subjects)  # [N]
    slopes = slope_sd * torch.randn(n_subjects, L, generator=gen)  # [P, L]
    intercepts = 0.8 * torch.randn(n_subjects, L, generator=gen)
    z = torch.tensor([0.5, -0.3]) + t[:, None] * torch.tensor([1.0, 0.5]) + intercepts[subject] + slopes[subject] * t[:, None]
    y = z + noise * torch.randn(z.shape, generator=gen)
    x = design(subject, t)
    batch = batch_of(x, subject, y)
    prior = make_prior([n_visits] * n_subjects, gen, mode=mode)
    enc = Encoded(y, torch.full_like(y, noise ** 2))
    sparse = prior.sparse_parameters()
    dense = [p for p in prior.parameters() if all(p is not q for q in sparse)]
    optims = [torch.optim.SparseAdam(sparse, lr=0.05), torch.optim.Adam(dense, lr=0.05)]
    for _ in range(steps):
        inference = prior.infer(enc, batch)
        q = inference.q_z
        recon = 0.5 * ((y - q.mean).square() + q.variance).sum() / noise ** 2
        loss = recon + inference.kl.local + inference.kl.global_
        for opt in optims:
            opt.zero_grad()
        loss.backward()
        for opt in optims:
            opt.step()
    return prior, slopes


def fitted_slopes(prior: SLMMPrior) -> torch.Tensor:
    n_levels, n_cols = prior.effects.term_shapes[0]
    return prior.effects.random_mean[0].detach().view(n_levels, n_cols, L)[:, 1]  # [P, L]


def test_unsupported_subject_slopes_shrink_towards_zero():
    """Random intercepts only: with q(A_r) Gaussian and τ_r learned, the subjects' slope rows
    shrink to (nearly) 0 and so does the slope's τ; the fixed penalty (τ_r = 1) fits the noise."""
    gaussian, _ = linear_gaussian_fit(0.0, "gaussian", seed=1)
    point, _ = linear_gaussian_fit(0.0, "point", seed=1)
    spread_gaussian = float(fitted_slopes(gaussian).std(0).mean())
    spread_point = float(fitted_slopes(point).std(0).mean())
    assert spread_point > 0.03  # noise 0.2 over 8 visits: least-squares slopes spread ~0.1
    # the ML estimate of τ² from 40 subjects' noise-only slopes is itself noisy (seeds 0-2: spread
    # ratios 0.33, 0.18, 0.06 and slope τ up to 0.11 against τ_r = 1 of the fixed penalty)
    assert spread_gaussian < 0.35 * spread_point
    tau_slope = gaussian.log_tau_random[0].exp().view(F_COLS, L)[1]
    assert float(tau_slope.max()) < 0.15 * float(gaussian.tau_random)


def test_real_subject_slopes_are_recovered():
    """Random slopes with std 0.8: the fitted slope rows correlate with the true ones (> 0.9 per
    latent dimension) and the learned τ of the slope is near 0.8."""
    prior, truth = linear_gaussian_fit(0.8, "gaussian")
    fitted = fitted_slopes(prior)
    for l in range(L):
        corr = np.corrcoef(fitted[:, l].numpy(), truth[:, l].numpy())[0, 1]
        assert corr > 0.9, (l, corr)
    tau_slope = prior.log_tau_random[0].exp().view(F_COLS, L)[1].detach()
    assert ((tau_slope > 0.5) & (tau_slope < 1.2)).all(), tau_slope


COMMON = dict(variant="slmm", design="~ time + sex + (1 + time | id)", latent_dim=2, network="mlp",
              network_options={"hidden": [16]}, epochs=2, batch_size=16, lr=1e-2, progress=False)


@pytest.mark.parametrize("objective", ["elbo", "gsnn"])
def test_run_directory_round_trip_and_prior_json(objective, tmp_path):
    """prior.json records ``random_effects``; lmmvae.load predicts exactly as the fitted model; a
    run summarised before the option existed (no key) loads with point random-effect rows."""
    data = simulate_lmm(n_subjects=8, n_times=6, data_dim=5, n_future=2, seed=3)
    first = lmmvae.fit(data, seed=7, out=tmp_path / "g", objective=objective, **COMMON)
    assert json.loads((tmp_path / "g" / "prior.json").read_text())["random_effects"] == "gaussian"
    assert first.model.prior.effects.random_gaussian and first.model.prior.log_tau_random is not None
    np.testing.assert_array_equal(lmmvae.load(tmp_path / "g").predict_arrays(data)["y_pred"],
                                  first.predict_arrays(data)["y_pred"])
    old = lmmvae.fit(data, seed=7, out=tmp_path / "p", objective=objective, prior={"random_effects": "point"}, **COMMON)
    summary = json.loads((tmp_path / "p" / "prior.json").read_text())
    del summary["random_effects"]
    (tmp_path / "p" / "prior.json").write_text(json.dumps(summary))
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    config["model"]["prior"] = {}  # as written before the option: the default now is gaussian
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    loaded = lmmvae.load(tmp_path / "p")
    assert not loaded.model.prior.effects.random_gaussian
    np.testing.assert_array_equal(loaded.predict_arrays(data)["y_pred"], old.predict_arrays(data)["y_pred"])


def test_unknown_random_effects_value_is_a_one_line_error(tmp_path):
    data = simulate_lmm(n_subjects=4, n_times=4, data_dim=3, n_future=1, seed=0)
    with pytest.raises(ConfigError, match="random_effects") as err:
        lmmvae.fit(data, prior={"random_effects": "normal"}, **COMMON)
    assert "\n" not in str(err.value)
