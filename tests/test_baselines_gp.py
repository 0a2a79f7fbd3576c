"""The GP priors of the baselines against independent derivations and on data from a known GP.

Equations: the low-rank (Woodbury) GP term of GPPVAE against dense linear algebra, its
pseudo-minibatch surrogate's gradients against autograd of the full-data KL, its predictive
against dense GP conditioning. Recovery: latents drawn from a known GP with an identity
"encoder" (``μ = y``), kernel hyper-parameters fitted through the prior's own KL terms; the
fitted lengthscales and noise are close to the truth, the posterior mean denoises the training
latents, and the GP predictive at held-out inputs beats the prior mean.
"""

import math

import numpy as np
import pytest
import torch

from baselines.gppvae import GPPVAEOptions, GPPVAEPrior, LowRankGaussian, view_grid
from baselines.kernels import Factor, KernelInputs, ObjectViewKernel
from baselines.kernels import Component
from baselines.lvae import LVAEOptions, LVAEPrior
from baselines.lvae import initial_inducing as lvae_initial_inducing
from baselines.svgpvae import SVGPVAEOptions, SVGPVAEPrior, initial_inducing
from lmmvae.batch import Batch, DesignBatch
from lmmvae.h5 import Covariate
from lmmvae.priors.base import Encoded

TWO_PI = 2 * math.pi


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small GP algebra is 10-50x slower with 2 OpenMP threads on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- data from a known object × view GP ---------------------------------------------------------

def object_view_truth(seed=0, n_subjects=12, n_views=16, lengthscales=(0.8, 2.5), noise=0.01, object_dim=2):
    """``f_l ~ GP(0, (W Wᵀ)_{pp'} · exp(−2 sin²(π Δa / 2π) / ℓ_l))`` with plain torch formulas."""
    gen = torch.Generator().manual_seed(seed)
    angle = (torch.arange(n_views) * TWO_PI / n_views).repeat(n_subjects)  # [N]
    subject = torch.arange(n_subjects).repeat_interleave(n_views)  # [N]
    w = torch.randn(n_subjects, object_dim, generator=gen, dtype=torch.float64) / math.sqrt(object_dim)
    k_obj = (w @ w.T)[subject][:, subject]  # [N, N]
    diff = (angle[:, None] - angle[None, :]).double()
    f = []
    for ell in lengthscales:
        k = k_obj * torch.exp(-2 * torch.sin(math.pi * diff / TWO_PI).square() / ell)
        evals, evecs = torch.linalg.eigh(k)  # K has rank H × n_views: sample through its root
        root = evecs * evals.clamp_min(0).sqrt()
        f.append((root @ torch.randn(len(angle), 1, generator=gen, dtype=torch.float64)).squeeze(-1).float())
    f = torch.stack(f, dim=-1)  # [N, L]
    y = f + math.sqrt(noise) * torch.randn(f.shape, generator=gen)
    return angle, subject, f, y


def make_batch(index, subject, covariates, n_features=1, scale=1.0):
    n = index.shape[0]
    return Batch(index=index, y=torch.zeros(n, n_features), mask=torch.ones(n, n_features),
                 x=DesignBatch(shared=torch.zeros(n, 0)), covariates=covariates, subject=subject, scale=scale)


def gppvae_prior(angle, subject, n_train, latent_dim=2, object_dim=2, noise=0.1):
    covs = {"angle": Covariate(angle.numpy().astype(np.float64), "continuous")}
    factor = Factor("angle", "periodic", period=TWO_PI)
    inputs = KernelInputs([factor], covs)
    kernel = ObjectViewKernel(int(subject.max()) + 1, object_dim, factor, inputs, latent_dim)
    grid = view_grid(inputs, covs["angle"].values, max_rank=64)
    return GPPVAEPrior(latent_dim, kernel, grid, n_train, GPPVAEOptions(object_dim=object_dim, noise=noise))


def dense_kernel(prior: GPPVAEPrior, subject, angle):
    x = prior.kernel.inputs(subject, prior.kernel.view({"angle": angle}))
    return prior.kernel(x).double()  # [L, N, N]


# -- GPPVAE: equations ------------------------------------------------------------------------

def test_woodbury_terms_equal_dense_linear_algebra():
    gen = torch.Generator().manual_seed(1)
    V = torch.randn(3, 40, 12, generator=gen, dtype=torch.float64)
    noise = torch.tensor([0.05, 0.3, 1.2], dtype=torch.float64)
    x = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    sigma = V @ V.transpose(-1, -2) + torch.diag_embed(noise[:, None].expand(3, 40))
    lr = LowRankGaussian(V, noise)
    torch.testing.assert_close(lr.solve(x), torch.linalg.solve(sigma, x.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(lr.logdet(), torch.logdet(sigma))
    torch.testing.assert_close(lr.diag_inverse(), torch.linalg.inv(sigma).diagonal(dim1=-2, dim2=-1))
    # posterior mean of the weights: Vᵀ Σ⁻¹ x
    torch.testing.assert_close(lr.weight_mean(x), (V.transpose(-1, -2) @ torch.linalg.solve(sigma, x.unsqueeze(-1))).squeeze(-1))


def test_low_rank_features_reproduce_the_product_kernel():
    angle, subject, _, _ = object_view_truth(n_subjects=5, n_views=8)
    prior = gppvae_prior(angle, subject, len(angle))
    V = prior.features(subject, prior.kernel.view({"angle": angle})).double()
    torch.testing.assert_close(V @ V.transpose(-1, -2), dense_kernel(prior, subject, angle), atol=1e-4, rtol=1e-4)


def full_kl(prior, mu_all, s2_all, subject, angle):
    """Dense ``KL(q(Z) ‖ N(0, K + σ²I))`` per latent dimension, summed: the objective the
    pseudo-minibatch surrogate must match in value and gradient."""
    K = dense_kernel(prior, subject, angle)
    noise = prior.noise.double()
    n = mu_all.shape[0]
    sigma = K + torch.diag_embed(noise[:, None].expand(-1, n))
    p = torch.distributions.MultivariateNormal(torch.zeros_like(mu_all.T), covariance_matrix=sigma)
    q = torch.distributions.MultivariateNormal(mu_all.T, covariance_matrix=torch.diag_embed(s2_all.T))
    return torch.distributions.kl_divergence(q, p).sum()


def test_pseudo_minibatch_surrogate_has_the_full_data_value_and_gradients():
    angle, subject, _, y = object_view_truth(n_subjects=6, n_views=8)
    n = len(angle)
    prior = gppvae_prior(angle, subject, n).double()
    gen = torch.Generator().manual_seed(3)
    cache_mu = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    cache_s2 = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.5 + 0.1
    batch_all = make_batch(torch.arange(n), subject, {"angle": angle.double()})
    prior._fill_cache(Encoded(cache_mu, cache_s2), batch_all)
    prior._row_of = torch.arange(n)
    rows = torch.tensor([1, 5, 17, 30, 44])
    mu = (cache_mu[rows] + 0.3).requires_grad_(True)
    s2 = (cache_s2[rows] * 1.5).requires_grad_(True)
    batch = make_batch(rows, subject[rows], {"angle": angle[rows].double()})
    prior.eval()  # keep the cache as it is for the comparison
    terms = prior.kl(torch.distributions.Normal(mu, s2.sqrt()), Encoded(mu, s2), batch)
    # dense reference on the cache with the batch rows replaced
    mu_ref, s2_ref = cache_mu.clone(), cache_s2.clone()
    mu_ref[rows], s2_ref[rows] = mu.detach(), s2.detach()
    mu_ref.requires_grad_(True)
    s2_ref.requires_grad_(True)
    ref = full_kl(prior, mu_ref, s2_ref, subject, angle.double())
    other = torch.ones(n, dtype=torch.bool)
    other[rows] = False
    entropy_rest = 0.5 * (s2_ref[other].detach().log() + math.log(2 * math.pi) + 1).sum()
    # value: global + local equals the dense KL minus the entropy of the rows outside the batch
    torch.testing.assert_close(terms.global_ + terms.local, ref + entropy_rest)
    # gradients with respect to the batch latents: Taylor coefficients from the whole cache
    g_mu, g_s2 = torch.autograd.grad(terms.local, (mu, s2), retain_graph=True)
    r_mu, r_s2 = torch.autograd.grad(ref, (mu_ref, s2_ref), retain_graph=True)
    torch.testing.assert_close(g_mu, r_mu[rows])
    torch.testing.assert_close(g_s2, r_s2[rows])
    # gradients with respect to the GP parameters: exact, from the global term
    params = [prior.raw_noise, prior.kernel.objects.weight, prior.kernel.view_kernel.raw_lengthscale,
              prior.kernel.object_kernel.raw_variance]
    for got, want in zip(torch.autograd.grad(terms.global_, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(got, want)


def test_training_step_refreshes_only_the_batch_cache_entries():
    angle, subject, _, y = object_view_truth(n_subjects=4, n_views=8)
    n = len(angle)
    prior = gppvae_prior(angle, subject, n)
    prior._fill_cache(Encoded(y.clone(), torch.full_like(y, 0.1)), make_batch(torch.arange(n), subject, {"angle": angle}))
    prior._row_of = torch.arange(n)
    rows = torch.tensor([0, 3, 9])
    new = torch.full((3, 2), 7.0)
    prior.train()
    prior.kl(torch.distributions.Normal(new, torch.ones_like(new)), Encoded(new, torch.ones_like(new)),
             make_batch(rows, subject[rows], {"angle": angle[rows]}))
    assert torch.equal(prior.cache_mean[rows], new)
    keep = torch.ones(n, dtype=torch.bool)
    keep[rows] = False
    assert torch.equal(prior.cache_mean[keep], y[keep])


def test_predictive_equals_dense_gp_conditioning_and_unseen_subject_gets_the_prior():
    angle, subject, _, y = object_view_truth(n_subjects=5, n_views=8)
    n = len(angle)
    train = torch.arange(n) % 3 != 0
    prior = gppvae_prior(angle, subject, int(train.sum())).double()
    idx = torch.nonzero(train).flatten()
    prior.condition(Encoded(y[train].double(), torch.full((len(idx), 2), 0.1, dtype=torch.float64)),
                    make_batch(idx, subject[train], {"angle": angle[train].double()}))
    test = ~train
    pred = prior.predict(make_batch(torch.nonzero(test).flatten(), subject[test], {"angle": angle[test].double()}))
    K = dense_kernel(prior, subject, angle.double())  # [L, N, N]
    noise = prior.noise.double()[:, None, None]
    k_tt = K[:, train][:, :, train] + noise * torch.eye(int(train.sum()), dtype=torch.float64)
    k_st = K[:, test][:, :, train]
    mean = (k_st @ torch.linalg.solve(k_tt, y[train].T.double().unsqueeze(-1))).squeeze(-1)
    var = K[:, test][:, :, test].diagonal(dim1=-2, dim2=-1) - (k_st * torch.linalg.solve(k_tt, k_st.transpose(-1, -2)).transpose(-1, -2)).sum(-1)
    torch.testing.assert_close(pred.mean, mean.T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pred.variance, (var + noise[:, :, 0]).T, atol=1e-5, rtol=1e-5)
    unseen = prior.predict(make_batch(torch.tensor([0]), torch.tensor([-1]), {"angle": angle[:1].double()}))
    assert torch.equal(unseen.mean, torch.zeros(1, 2, dtype=torch.float64))


# -- GPPVAE: recovery -------------------------------------------------------------------------

def test_gppvae_recovers_kernel_and_predicts_held_out_views():
    ell, noise, n_subjects = (0.5, 1.5), 0.01, 24
    angle, subject, f, y = object_view_truth(seed=0, n_subjects=n_subjects, n_views=16, lengthscales=ell, noise=noise)
    n = len(angle)
    held_out = torch.zeros(n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(5)
    for p in range(n_subjects):  # three views of every subject are never seen in training
        held_out[p * 16 + torch.randperm(16, generator=gen)[:3]] = True
    tr = torch.nonzero(~held_out).flatten()
    torch.manual_seed(0)
    prior = gppvae_prior(angle, subject, len(tr))
    encoded = Encoded(y[tr], torch.full((len(tr), 2), 1e-4))  # identity encoder: μ = y
    prior._fill_cache(encoded, make_batch(tr, subject[tr], {"angle": angle[tr]}))
    prior._row_of = torch.full((n,), -1, dtype=torch.long)
    prior._row_of[tr] = torch.arange(len(tr))
    optim = torch.optim.Adam(prior.parameters(), lr=0.1)
    prior.train()
    for step in range(150):
        rows = tr[torch.randperm(len(tr), generator=gen)[:48]]
        pos = prior._row_of[rows]
        batch = make_batch(rows, subject[rows], {"angle": angle[rows]}, scale=len(tr) / 48)
        enc = Encoded(encoded.mean[pos], encoded.var[pos])
        terms = prior.kl(enc.as_normal(), enc, batch)
        optim.zero_grad()
        (terms.global_ / len(tr)).backward()
        optim.step()
    fitted_ell = prior.kernel.view_kernel.lengthscale.detach().flatten()
    for got, want in zip(fitted_ell.tolist(), ell):
        assert abs(got - want) / want < 0.35, (fitted_ell, ell)
    assert 0.4 * noise < prior.noise.min() and prior.noise.max() < 2.5 * noise, prior.noise
    prior.eval()
    prior.condition(encoded, make_batch(tr, subject[tr], {"angle": angle[tr]}))
    fit = prior.predict(make_batch(tr, subject[tr], {"angle": angle[tr]})).mean
    post_mse = (fit - f[tr]).square().mean()
    # E[z | μ] of the latent GP still carries the noise σ²; the denoised f is closer to the truth
    assert post_mse < noise * 1.5, post_mse
    ho = torch.nonzero(held_out).flatten()
    pred = prior.predict(make_batch(ho, subject[ho], {"angle": angle[ho]})).mean
    pred_mse = (pred - f[ho]).square().mean()
    prior_mse = f[ho].square().mean()  # the prior mean is 0
    assert pred_mse < 0.1 * prior_mse, (pred_mse, prior_mse)


# -- SVGP-VAE ---------------------------------------------------------------------------------

def svgp_prior(angle, subject, n_inducing, latent_dim=2, object_dim=2, inducing_rows=None):
    covs = {"angle": Covariate(angle.numpy().astype(np.float64), "continuous")}
    factor = Factor("angle", "periodic", period=TWO_PI)
    inputs = KernelInputs([factor], covs)
    kernel = ObjectViewKernel(int(subject.max()) + 1, object_dim, factor, inputs, latent_dim)
    view = inputs({"angle": angle})
    if inducing_rows is None:
        inducing = initial_inducing(kernel, subject.numpy(), view, n_inducing)
    else:
        with torch.no_grad():
            inducing = kernel.inputs(subject[inducing_rows], view[inducing_rows])
    return SVGPVAEPrior(latent_dim, kernel, inducing, SVGPVAEOptions(object_dim=object_dim, n_inducing=n_inducing))


def test_svgp_with_inducing_points_at_the_data_is_the_exact_gp_posterior_and_bound():
    angle, subject, _, y = object_view_truth(n_subjects=4, n_views=6)
    n = len(angle)
    prior = svgp_prior(angle, subject, n, inducing_rows=torch.arange(n)).double()
    gen = torch.Generator().manual_seed(2)
    s2 = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.2 + 0.05
    enc = Encoded(y.double(), s2)
    batch = make_batch(torch.arange(n), subject, {"angle": angle.double()})
    q = prior.posterior(enc, batch)
    K = prior.kernel(prior._inputs(batch)).double()  # [L, N, N]
    S = torch.diag_embed(s2.T)
    gain = K @ torch.linalg.inv(K + S)
    torch.testing.assert_close(q.mean, (gain @ y.T.double().unsqueeze(-1)).squeeze(-1).T, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(q.variance, (K - gain @ K).diagonal(dim1=-2, dim2=-1).T, atol=1e-6, rtol=1e-5)
    terms = prior.kl(q, enc, batch)
    assert terms.local == 0
    # the pseudo-likelihood's expectation under q(z) (here by Monte Carlo) minus KL(q(u)‖p(u)) is
    # the Titsias bound, which is the exact log marginal likelihood when Z = X
    z = q.sample((20000,))
    expected = torch.distributions.Normal(z, s2.sqrt()).log_prob(y.double()).mean(0).sum()
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, n, dtype=torch.float64), K + S).log_prob(y.T.double()).sum()
    assert abs(float(expected - terms.global_ - exact)) < 0.02 * abs(float(exact)), (expected - terms.global_, exact)
    closed = (torch.distributions.Normal(q.mean, s2.sqrt()).log_prob(y.double()) - q.variance / (2 * s2)).sum()
    torch.testing.assert_close(closed - terms.global_, exact, atol=1e-5, rtol=1e-6)


def test_svgp_batch_scale_counts_each_pseudo_observation_c_times():
    angle, subject, _, y = object_view_truth(n_subjects=4, n_views=6)
    prior = svgp_prior(angle, subject, 8).double()
    rows = torch.tensor([0, 4, 7, 11, 20])
    x = prior.kernel.inputs(subject[rows], prior.kernel.view({"angle": angle[rows].double()}))
    s2 = torch.full((5, 2), 0.3, dtype=torch.float64)
    scaled = prior.inducing_posterior(x, y[rows].double(), s2, c=3.0)
    tripled = prior.inducing_posterior(x.repeat(3, 1), y[rows].double().repeat(3, 1), s2.repeat(3, 1), c=1.0)
    torch.testing.assert_close(scaled.weights, tripled.weights)
    torch.testing.assert_close(scaled.kl(), tripled.kl())


def test_svgpvae_recovers_kernel_and_predicts_held_out_views():
    ell, noise, n_subjects = (0.5, 1.5), 0.01, 24
    angle, subject, f, y = object_view_truth(seed=0, n_subjects=n_subjects, n_views=16, lengthscales=ell, noise=noise)
    n = len(angle)
    held_out = torch.zeros(n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(5)
    for p in range(n_subjects):
        held_out[p * 16 + torch.randperm(16, generator=gen)[:3]] = True
    tr = torch.nonzero(~held_out).flatten()
    torch.manual_seed(0)
    prior = svgp_prior(angle[tr], subject[tr], 64)
    optim = torch.optim.Adam(prior.parameters(), lr=0.05)
    # c = 1: the batch-wise Titsias bound scaled by c = N/|b| is biased towards short lengthscales
    # (measured: c = 4 fits (0.44, 0.64) for the truth (0.5, 1.5)); the unscaled bound is exact
    size = len(tr)
    for step in range(200):
        rows = tr[torch.randperm(len(tr), generator=gen)[:size]]
        enc = Encoded(y[rows], torch.full((size, 2), noise))  # identity encoder with the true noise
        batch = make_batch(rows, subject[rows], {"angle": angle[rows]}, scale=len(tr) / size)
        q = prior.posterior(enc, batch)
        # identity decoder with the true noise: E_q log N(y | z, σ²) in closed form
        recon = (torch.distributions.Normal(q.mean, noise ** 0.5).log_prob(y[rows]) - q.variance / (2 * noise)).sum()
        terms = prior.kl(q, enc, batch)
        loss = -(batch.scale * (recon - terms.local) - terms.global_) / len(tr)
        optim.zero_grad()
        loss.backward()
        optim.step()
    fitted_ell = prior.kernel.view_kernel.lengthscale.detach().flatten()
    for got, want in zip(fitted_ell.tolist(), ell):
        assert abs(got - want) / want < 0.35, (fitted_ell, ell)
    enc = Encoded(y[tr], torch.full((len(tr), 2), noise))
    batch = make_batch(tr, subject[tr], {"angle": angle[tr]})
    with torch.no_grad():
        post_mse = (prior.posterior(enc, batch).mean - f[tr]).square().mean()
        assert post_mse < noise, post_mse  # denoised: closer to f than the observations are
        prior.condition(enc, batch)
        ho = torch.nonzero(held_out).flatten()
        pred = prior.predict(make_batch(ho, subject[ho], {"angle": angle[ho]})).mean
    pred_mse, prior_mse = (pred - f[ho]).square().mean(), f[ho].square().mean()
    assert pred_mse < 0.1 * prior_mse, (pred_mse, prior_mse)


# -- L-VAE ------------------------------------------------------------------------------------

def additive_truth(seed=0, n_subjects=40, n_times=10, ells=(2.0, 4.0), subject_var=0.5, noise=0.01):
    """``f_l = f_age + f_id×age``: one shared RBF curve in raw age (lengthscale 3) plus an independent
    RBF curve per subject (lengthscale ``ℓ_l``, variance ``subject_var``), plain torch formulas."""
    gen = torch.Generator().manual_seed(seed)
    age = torch.arange(n_times, dtype=torch.float64).repeat(n_subjects)
    subject = torch.arange(n_subjects).repeat_interleave(n_times)
    same = (subject[:, None] == subject[None, :]).double()
    sq = (age[:, None] - age[None, :]).square()
    f = []
    for ell in ells:
        k = torch.exp(-0.5 * sq / 3.0 ** 2) + subject_var * same * torch.exp(-0.5 * sq / ell ** 2)
        evals, evecs = torch.linalg.eigh(k)
        f.append((evecs * evals.clamp_min(0).sqrt()) @ torch.randn(len(age), generator=gen, dtype=torch.float64))
    f = torch.stack(f, -1).float()
    y = f + noise ** 0.5 * torch.randn(f.shape, generator=gen)
    return age.float(), subject, f, y


def lvae_prior(age, subject, n_train, n_inducing=10, latent_dim=2, components=None):
    covs = {"age": Covariate(age.numpy().astype(np.float64), "time"),
            "id": Covariate(subject.numpy(), "id", levels=list(range(int(subject.max()) + 1)))}
    age_f, id_f = Factor("age", "rbf"), Factor("id", "categorical")
    components = components or [Component((age_f,)), Component((id_f, age_f))]
    inputs = KernelInputs([f for c in components for f in c.factors], covs)
    x = inputs({"age": age, "id": subject})
    shared = [c for c in components if not c.involves("id")]
    per_subject = [c for c in components if c.involves("id")]
    inducing = lvae_initial_inducing(inputs, x, n_inducing, shared)
    return LVAEPrior(latent_dim, inputs, shared, per_subject, inducing, n_train, int(subject.max()) + 1,
                     LVAEOptions(n_inducing=n_inducing))


def test_lvae_subject_bound_equals_its_monte_carlo_expectation_over_u():
    age, subject, _, y = additive_truth(n_subjects=5, n_times=6)
    keep = torch.tensor([0, 1, 2, 6, 7, 12, 13, 14, 15, 16, 17])  # subjects of 3, 2 and 6 rows: padded blocks
    components = [Component((Factor("age", "rbf"),)), Component((Factor("id", "categorical"),)),
                  Component((Factor("id", "categorical"), Factor("age", "rbf")))]
    prior = lvae_prior(age, subject, len(age), n_inducing=4, components=components).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        prior.inducing[:, prior.inputs.index("age")] = torch.tensor([-1.5, -0.5, 0.4, 1.3])  # well separated
        prior.q_u.variational_mean.copy_(torch.randn(2, 4, generator=gen))
        prior.q_u.chol_variational_covar.copy_(torch.randn(2, 4, 4, generator=gen).tril() * 0.3 + torch.eye(4))
    mu = y[keep].double()
    s2 = torch.rand(len(keep), 2, generator=gen, dtype=torch.float64) * 0.3 + 0.05
    batch = make_batch(keep, subject[keep], {"age": age[keep].double(), "id": subject[keep]})
    terms = prior.kl(torch.distributions.Normal(mu, s2.sqrt()), Encoded(mu, s2), batch)
    # reference: sample u ~ q(u), exact Gaussian KL(q(Z_p) ‖ p(Z_p | u)) per subject, averaged
    x = prior.inputs(batch.covariates)
    k_mm = prior.shared_kernel(prior.inducing).to_dense()
    k_nm = prior.shared_kernel(x, prior.inducing).to_dense()
    a = k_nm @ torch.linalg.inv(k_mm)  # [L, n, M]
    resid = prior.shared_kernel(x).to_dense() - a @ k_nm.transpose(-1, -2)
    sigma = prior.subject_kernel(x).to_dense() + torch.diag_embed(resid.diagonal(dim1=-2, dim2=-1) + prior.noise[:, None])
    m, chol_s = prior.q_u_moments(torch.linalg.cholesky(k_mm))
    u = torch.distributions.MultivariateNormal(m, scale_tril=chol_s).sample((20000,))  # [S, L, M]
    total = 0.0
    for p in subject[keep].unique():
        rows = torch.nonzero(subject[keep] == p).flatten()
        cond_mean = (a[:, rows] @ u.unsqueeze(-1)).squeeze(-1)  # [S, L, n_p]
        prior_p = torch.distributions.MultivariateNormal(cond_mean, sigma[:, rows][:, :, rows])
        q_p = torch.distributions.MultivariateNormal(mu[rows].T, torch.diag_embed(s2[rows].T))
        total = total + torch.distributions.kl_divergence(q_p, prior_p).sum(-1).mean()
    assert abs(float(terms.local - total)) < 0.01 * float(total), (terms.local, total)
    # and the global term is KL(q(u) ‖ N(0, K_mm))
    ref_u = torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(m, scale_tril=chol_s),
                                              torch.distributions.MultivariateNormal(torch.zeros_like(m), k_mm)).sum()
    torch.testing.assert_close(terms.global_, ref_u)


def test_lvae_recovers_kernel_and_predicts_future_time_points():
    ells, subject_var, noise, n_subjects = (2.0, 4.0), 0.5, 0.01, 40
    age, subject, f, y = additive_truth(seed=1, n_subjects=n_subjects, ells=ells, subject_var=subject_var, noise=noise)
    held_out = (subject < 10) & (age >= 7)  # the last three visits of ten subjects
    tr = torch.nonzero(~held_out).flatten()
    torch.manual_seed(0)
    prior = lvae_prior(age[tr], subject[tr], len(tr))
    optim = torch.optim.Adam(prior.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    enc_all = Encoded(y[tr], torch.full((len(tr), 2), 1e-4))  # identity encoder: μ = y
    per_batch = 10  # subjects per minibatch
    for step in range(300):
        chosen = torch.randperm(n_subjects, generator=gen)[:per_batch]
        pos = torch.nonzero(torch.isin(subject[tr], chosen)).flatten()
        rows = tr[pos]
        batch = make_batch(rows, subject[rows], {"age": age[rows], "id": subject[rows]}, scale=n_subjects / per_batch)
        enc = Encoded(enc_all.mean[pos], enc_all.var[pos])
        terms = prior.kl(enc.as_normal(), enc, batch)
        loss = (batch.scale * terms.local + terms.global_) / len(tr)
        optim.zero_grad()
        loss.backward()
        optim.step()
    # the subject component (40 independent curves) is identifiable; the shared curve is one draw
    subject_kernel = prior.subject_kernel.kernels[0]
    rbf = subject_kernel.base_kernel.kernels[1]
    fitted_ell = rbf.lengthscale.detach().flatten() * prior.inputs.scale[prior.inputs.index("age")]
    for got, want in zip(fitted_ell.tolist(), ells):
        assert abs(got - want) / want < 0.35, (fitted_ell, ells)
    fitted_var = subject_kernel.outputscale.detach()
    assert ((fitted_var > 0.5 * subject_var) & (fitted_var < 2 * subject_var)).all(), fitted_var
    assert (prior.noise > 0.4 * noise).all() and (prior.noise < 2.5 * noise).all(), prior.noise
    prior.condition(enc_all, make_batch(tr, subject[tr], {"age": age[tr], "id": subject[tr]}))
    ho = torch.nonzero(held_out).flatten()
    with torch.no_grad():
        fit = prior.predict(make_batch(tr, subject[tr], {"age": age[tr], "id": subject[tr]})).mean
        pred = prior.predict(make_batch(ho, subject[ho], {"age": age[ho], "id": subject[ho]})).mean
        shared_only = prior.predict(make_batch(ho, torch.full_like(subject[ho], -1), {"age": age[ho], "id": subject[ho]})).mean
    assert (fit - f[tr]).square().mean() < 1.5 * noise  # posterior mean at training inputs
    pred_mse = (pred - f[ho]).square().mean()
    assert pred_mse < 0.25 * f[ho].square().mean(), pred_mse  # beats the prior mean 0
    assert pred_mse < 0.5 * (shared_only - f[ho]).square().mean()  # the subject's own latents help


def test_predictions_do_not_depend_on_the_batch_size_even_when_it_equals_the_latent_size():
    """gpytorch takes the diagonal of a square-looking ``diag=True`` result: [L, n] with n == L."""
    angle, subject, _, y = object_view_truth(n_subjects=3, n_views=6)
    n = len(angle)
    enc = Encoded(y, torch.full_like(y, 0.05))
    gp = gppvae_prior(angle, subject, n)
    svgp = svgp_prior(angle, subject, 6)
    age = angle * 3
    lv = lvae_prior(age, subject, n, n_inducing=4)
    with torch.no_grad():  # different hyper-parameters per latent dimension
        for prior in (gp, svgp, lv):
            for name, param in prior.named_parameters():
                if name.split(".")[-1].startswith("raw_") and param.dim() and param.shape[0] == 2:
                    param[1] += 0.7
    for prior, covariates in ((gp, {"angle": angle}), (svgp, {"angle": angle}), (lv, {"age": age, "id": subject})):
        batch_all = make_batch(torch.arange(n), subject, covariates)
        prior.eval()
        with torch.no_grad():
            prior.condition(enc, batch_all)
            whole = prior.predict(batch_all)
            rows = torch.tensor([2, 9])  # two rows: the latent size
            pair = prior.predict(make_batch(rows, subject[rows], {k: v[rows] for k, v in covariates.items()}))
        torch.testing.assert_close(pair.mean, whole.mean[rows])
        torch.testing.assert_close(pair.variance, whole.variance[rows])
