"""The GP priors of the baselines against independent derivations and on data from a known GP.

Equations: the low-rank (Woodbury) GP term of GPPVAE against dense linear algebra, its
pseudo-minibatch surrogate's gradients against autograd of the full-data KL, its predictive
against dense GP conditioning. Recovery: latents drawn from a known GP with an identity
"encoder" (``μ = y``), kernel hyper-parameters fitted through the prior's own KL terms; the
fitted lengthscales and noise are close to the truth, the posterior mean denoises the training
latents, and the GP predictive at held-out inputs beats the prior mean.
"""

import math

import pytest
import torch

from baselines.gppvae import LowRankGaussian
from gp_truth import dense_kernel, gppvae_prior, lvae_prior, make_batch, object_view_truth, svgp_prior
from lmmvae.model.priors.base import Encoded


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
    terms = prior.infer(Encoded(mu, s2), batch).kl
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
    prior.infer(Encoded(new, torch.ones_like(new)), make_batch(rows, subject[rows], {"angle": angle[rows]}))
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
        terms = prior.infer(enc, batch).kl
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

def test_svgp_with_inducing_points_at_the_data_is_the_exact_gp_posterior_and_bound():
    angle, subject, _, y = object_view_truth(n_subjects=4, n_views=6)
    n = len(angle)
    prior = svgp_prior(angle, subject, n, inducing_rows=torch.arange(n)).double()
    gen = torch.Generator().manual_seed(2)
    s2 = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.2 + 0.05
    enc = Encoded(y.double(), s2)
    batch = make_batch(torch.arange(n), subject, {"angle": angle.double()})
    inferred = prior.infer(enc, batch)
    q = inferred.q_z
    K = prior.kernel(prior._inputs(batch)).double()  # [L, N, N]
    S = torch.diag_embed(s2.T)
    gain = K @ torch.linalg.inv(K + S)
    torch.testing.assert_close(q.mean, (gain @ y.T.double().unsqueeze(-1)).squeeze(-1).T, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(q.variance, (K - gain @ K).diagonal(dim1=-2, dim2=-1).T, atol=1e-6, rtol=1e-5)
    terms = inferred.kl
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
        inferred = prior.infer(enc, batch)
        q = inferred.q_z
        # identity decoder with the true noise: E_q log N(y | z, σ²) in closed form
        recon = (torch.distributions.Normal(q.mean, noise ** 0.5).log_prob(y[rows]) - q.variance / (2 * noise)).sum()
        terms = inferred.kl
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
        post_mse = (prior.infer(enc, batch, kl=False).q_z.mean - f[tr]).square().mean()
        assert post_mse < noise, post_mse  # denoised: closer to f than the observations are
        prior.condition(enc, batch)
        ho = torch.nonzero(held_out).flatten()
        pred = prior.predict(make_batch(ho, subject[ho], {"angle": angle[ho]})).mean
    pred_mse, prior_mse = (pred - f[ho]).square().mean(), f[ho].square().mean()
    assert pred_mse < 0.1 * prior_mse, (pred_mse, prior_mse)


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
