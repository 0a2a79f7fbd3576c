"""The LMM priors against independent derivations: expected KL vs Monte Carlo (SPEC 2.3), the sLMM
subject posterior vs joint-Gaussian conditioning (SPEC 3.2), sparse gathers vs dense matmuls (SPEC 1)."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from lmmvae.data.batch import Batch, DesignBatch
from lmmvae.model.priors.base import Encoded
from lmmvae.model.priors.linear import MixedEffects
from lmmvae.model.priors.olmm import OLMMOptions, OLMMPrior
from lmmvae.model.priors.slmm import SLMMOptions, SLMMPrior, subject_posterior



@pytest.fixture(autouse=True)
def float64():
    """Double precision for tight comparisons; restored after each test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)

Q_S, P, F_COLS, L, B = 3, 5, 2, 4, 7


def random_design(gen, levels=None):
    levels = torch.randint(0, P, (B,), generator=gen) if levels is None else levels
    return DesignBatch(shared=torch.randn(B, Q_S, generator=gen), levels=[levels],
                       values=[torch.randn(B, F_COLS, generator=gen)])


def dense(x: DesignBatch) -> torch.Tensor:
    """x_i as the dense row [shared | one-hot(level) ⊗ f] (level-major), for reference only."""
    re = torch.zeros(B, P * F_COLS)
    for i in range(B):
        lv = int(x.levels[0][i])
        if lv >= 0:
            re[i, lv * F_COLS:(lv + 1) * F_COLS] = x.values[0][i]
    return torch.cat([x.shared, re], dim=1)


def dense_tables(effects: MixedEffects):
    mean = torch.cat([effects.shared_mean, effects.random_mean[0].reshape(P * F_COLS, L)])
    std = torch.cat([effects.shared_log_std, effects.random_log_std[0].reshape(P * F_COLS, L)]).exp()
    return mean, std


def make_prior(gen, sigma_z=0.7):
    opts = OLMMOptions(q_A="gaussian", sigma_z=sigma_z, tau_shared=1.3, tau_random=0.6)
    prior = OLMMPrior(L, Q_S, [(P, F_COLS)], [np.array([3, 1, 2, 4, 1])], opts)
    with torch.no_grad():
        for p in prior.effects.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return prior


def batch_of(x, gen):
    n = x.n_rows
    return Batch(index=torch.arange(n), y=torch.zeros(n, 1), mask=torch.ones(n, 1), x=x,
                 covariates={}, subject=x.levels[0] if x.levels else torch.zeros(n, dtype=torch.long))


def test_gather_equals_dense_matmul_and_unseen_level_is_zero():
    gen = torch.Generator().manual_seed(0)
    prior = make_prior(gen)
    x = random_design(gen, levels=torch.tensor([0, 1, 2, 3, 4, -1, 2]))
    mean, std = dense_tables(prior.effects)
    torch.testing.assert_close(prior.effects.mean(x), dense(x) @ mean)
    torch.testing.assert_close(prior.effects.variance(x), dense(x).square() @ std.square())
    # row 5 has an unseen level: only the shared part remains
    torch.testing.assert_close(prior.effects.mean(x)[5], x.shared[5] @ prior.effects.shared_mean)


def test_expected_kl_matches_monte_carlo_over_q_A():
    """SPEC 2.3: E_q(A) KL(q(z_i) || N(A^T x_i, σ_z² I)) analytic vs an average over draws of A."""
    gen = torch.Generator().manual_seed(1)
    prior = make_prior(gen, sigma_z=0.7)
    x = random_design(gen)
    q_z = Normal(torch.randn(B, L, generator=gen), torch.rand(B, L, generator=gen) + 0.3)
    batch = batch_of(x, gen)
    analytic = prior.infer(Encoded(q_z.mean, q_z.variance), batch).kl.local - prior.prior_kl(batch).local

    mean, std = dense_tables(prior.effects)
    n_draws = 200_000
    a = mean + std * torch.randn(n_draws, *mean.shape, generator=gen)  # [S, Q, L]
    prior_means = torch.einsum("bq,sql->sbl", dense(x), a)  # [S, B, L]
    draws = kl_divergence(Normal(q_z.mean, q_z.stddev), Normal(prior_means, 0.7)).sum((-1, -2)).detach()  # [S]
    mc, standard_error = float(draws.mean()), float(draws.std() / math.sqrt(n_draws))
    analytic = float(analytic.detach())
    assert abs(analytic - mc) < 4 * standard_error
    # a wrong variance term (dropping (x⊙x)^T(S⊙S)) would be far off
    no_var = float(kl_divergence(q_z, Normal(dense(x) @ mean.detach(), 0.7)).sum())
    assert abs(no_var - mc) > 50 * standard_error


def test_random_effect_kl_shares_sum_to_full_kl():
    """Distributing KL(q(A_r) || p(A_r)) over a subject's rows (weights 1/n_p) recovers it exactly."""
    gen = torch.Generator().manual_seed(2)
    prior = make_prior(gen)
    counts = [3, 1, 2, 4, 1]
    levels = torch.repeat_interleave(torch.arange(P), torch.tensor(counts))
    n = levels.shape[0]
    x = DesignBatch(shared=torch.randn(n, Q_S, generator=gen), levels=[levels], values=[torch.randn(n, F_COLS)])
    shares = prior.prior_kl(batch_of(x, gen)).local
    tau_r = 0.6
    m, s = prior.effects.random_mean[0], prior.effects.random_log_std[0].exp()
    full = kl_divergence(Normal(m, s), Normal(torch.zeros_like(m), tau_r)).sum()
    torch.testing.assert_close(shares, full)
    tau_s = 1.3
    ms, ss = prior.effects.shared_mean, prior.effects.shared_log_std.exp()
    torch.testing.assert_close(prior.prior_kl(batch_of(x, gen)).global_,
                               kl_divergence(Normal(ms, ss), Normal(torch.zeros_like(ms), tau_s)).sum())


def test_gradients_of_random_effects_are_sparse():
    gen = torch.Generator().manual_seed(3)
    prior = make_prior(gen)
    x = random_design(gen, levels=torch.tensor([0, 0, 1, 1, 0, 1, 0]))
    q_z = Normal(torch.randn(B, L), torch.ones(B, L))
    kl = prior.infer(Encoded(q_z.mean, q_z.variance), batch_of(x, gen)).kl
    (kl.local + kl.global_).backward()
    grad = prior.effects.random_mean[0].grad
    assert grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    assert touched == {0, 1}


def test_slmm_subject_posterior_equals_joint_gaussian_conditioning():
    """SPEC 3.2 vs conditioning the joint Gaussian of (ε, r_1..r_n), r_i = ε + noise_i."""
    gen = torch.Generator().manual_seed(4)
    sigma_eps2 = torch.tensor(0.8)
    r = torch.randn(4, 1, generator=gen)
    s2 = torch.rand(4, 1, generator=gen) + 0.2
    post = subject_posterior(r, s2, torch.zeros(4, dtype=torch.long), sigma_eps2)
    # joint: Cov(ε, r) = σ² 1ᵀ, Cov(r) = σ² 11ᵀ + diag(s²)
    cov_rr = sigma_eps2 * torch.ones(4, 4) + torch.diag(s2[:, 0])
    cov_er = sigma_eps2 * torch.ones(1, 4)
    mean = cov_er @ torch.linalg.solve(cov_rr, r)
    var = sigma_eps2 - cov_er @ torch.linalg.solve(cov_rr, cov_er.T)
    torch.testing.assert_close(post.mean[0], mean[:, 0])
    torch.testing.assert_close(post.var[0], var[0])


def test_slmm_groups_by_subject_and_predicts_with_training_offsets():
    gen = torch.Generator().manual_seed(5)
    prior = SLMMPrior(L, Q_S, [], n_subjects=3, options=SLMMOptions(sigma_eps=1.0))
    subjects = torch.tensor([2, 0, 2, 1, 0, 2, 1])
    x = DesignBatch(shared=torch.randn(B, Q_S, generator=gen))
    batch = Batch(index=torch.arange(B), y=torch.zeros(B, 1), mask=torch.ones(B, 1), x=x, covariates={}, subject=subjects)
    enc = Encoded(torch.randn(B, L, generator=gen), torch.rand(B, L, generator=gen) + 0.1)
    q = prior.infer(enc, batch, kl=False).q_z
    for p in range(3):
        rows = subjects == p
        alone = subject_posterior(enc.mean[rows] - prior.effects.mean(x)[rows], enc.var[rows],
                                  torch.zeros(int(rows.sum()), dtype=torch.long), torch.tensor(1.0))
        torch.testing.assert_close(q.mean[rows], (prior.effects.mean(x)[rows] + alone.mean[0]))
    prior.condition(enc, batch)
    new = Batch(index=torch.arange(2), y=torch.zeros(2, 1), mask=torch.ones(2, 1),
                x=DesignBatch(shared=torch.zeros(2, Q_S)), covariates={}, subject=torch.tensor([1, -1]))
    pred = prior.predict(new)
    torch.testing.assert_close(pred.mean[0], q.mean[subjects == 1][0] - prior.effects.mean(x)[subjects == 1][0])
    torch.testing.assert_close(pred.mean[1], torch.zeros(L))  # unseen subject: ν = 0
    torch.testing.assert_close(pred.variance[1], torch.ones(L))  # and prior variance σ_ε²


def test_learned_random_effect_stds_are_per_column_and_latent_dimension():
    """``learn_tau``: one τ per column of the random term and latent dimension (an LMM's G diagonal):
    the row shares still sum to ``Σ KL(N(M, S²) || N(0, τ_{f,l}²))``, and each τ gets its gradient."""
    gen = torch.Generator().manual_seed(5)
    prior = make_prior(gen)
    assert prior.options.learn_tau and prior.log_tau_random[0].shape == (F_COLS * L,)
    with torch.no_grad():
        prior.log_tau_random[0].copy_(torch.randn(F_COLS * L, generator=gen) * 0.5)
    counts = [3, 1, 2, 4, 1]
    levels = torch.repeat_interleave(torch.arange(P), torch.tensor(counts))
    n = levels.shape[0]
    x = DesignBatch(shared=torch.randn(n, Q_S, generator=gen), levels=[levels], values=[torch.randn(n, F_COLS)])
    shares = prior.prior_kl(batch_of(x, gen)).local
    tau = prior.log_tau_random[0].exp()  # [F*L], laid out as the table's columns
    m, s = prior.effects.random_mean[0], prior.effects.random_log_std[0].exp()
    full = kl_divergence(Normal(m, s), Normal(torch.zeros_like(m), tau.expand_as(m))).sum()
    torch.testing.assert_close(shares, full)
    shares.backward()
    assert (prior.log_tau_random[0].grad.abs() > 0).all()
    point = OLMMPrior(L, Q_S, [(P, F_COLS)], [np.array(counts)], OLMMOptions(q_A="point", sigma_z=1.0,
                                                                             learn_sigma_z=False))
    assert point.log_tau_random is None and not point.log_tau.requires_grad  # nothing would hold τ
