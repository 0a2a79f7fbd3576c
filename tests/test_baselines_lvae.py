"""L-VAE's prior against independent derivations and on data from a known additive GP: the
subject-decomposed KL bound against its Monte Carlo expectation over ``u``, and recovery of the
subject kernel and noise with an identity "encoder" (``μ = y``), the GP predictive at future visits
beating the prior mean and the shared components alone."""

import pytest
import torch

from baselines.kernels import Component, KernelFactor
from gp_truth import additive_truth, lvae_prior, make_batch
from lmmvae.model.priors.base import Encoded


def test_lvae_subject_bound_equals_its_monte_carlo_expectation_over_u():
    age, subject, _, y = additive_truth(n_subjects=5, n_times=6)
    keep = torch.tensor([0, 1, 2, 6, 7, 12, 13, 14, 15, 16, 17])  # subjects of 3, 2 and 6 rows: padded blocks
    components = [Component((KernelFactor("age", "rbf"),)), Component((KernelFactor("id", "categorical"),)),
                  Component((KernelFactor("id", "categorical"), KernelFactor("age", "rbf")))]
    prior = lvae_prior(age, subject, len(age), n_inducing=4, components=components).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        prior.inducing[:, prior.inputs.index("age")] = torch.tensor([-1.5, -0.5, 0.4, 1.3])  # well separated
        prior.q_u.variational_mean.copy_(torch.randn(2, 4, generator=gen))
        prior.q_u.chol_variational_covar.copy_(torch.randn(2, 4, 4, generator=gen).tril() * 0.3 + torch.eye(4))
    mu = y[keep].double()
    s2 = torch.rand(len(keep), 2, generator=gen, dtype=torch.float64) * 0.3 + 0.05
    batch = make_batch(keep, subject[keep], {"age": age[keep].double(), "id": subject[keep]})
    terms = prior.infer(Encoded(mu, s2), batch).kl
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
        terms = prior.infer(enc, batch).kl
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
