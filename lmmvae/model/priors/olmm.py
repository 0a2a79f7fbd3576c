"""The prior of oLMM-VAE: ``z_i ~ N(A^T x_i, σ_z² I)`` with ``A ~ N(0, τ²)`` (SPEC 2)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior
from lmmvae.model.priors.describe import (PriorDescription, as_numpy, fixed_effect_rows, latent_names,
                                   random_effect_rows)
from lmmvae.model.priors.linear import MixedEffects
from lmmvae.model.priors.slmm import GSNN_SIGMA_INIT


@dataclass
class OLMMOptions:
    """Options of oLMM-VAE (the YAML's ``prior:`` mapping); ``null`` = the objective's default.

    Defaults chosen on validation data (docs/recipe_study.md): ``q(A)`` a point estimate (MAP)
    under the ELBO and mean-field Gaussian under GSNN ("Defaults that generalise"); ``σ_z`` learned per latent
    dimension (type-II maximum likelihood through the objective), starting at 1 under the ELBO
    (SPEC 2.1) and at a small value under GSNN (SPEC 4: the decoder must not see almost only noise);
    the prior stds ``τ`` learned too, one per random-effect column and latent dimension (SPEC 2.1
    **choice**: an intercept and a slope get their own variance, as the G matrix of an LMM).
    """

    q_A: str | None = None  # "gaussian": mean-field q(A) (SPEC 2.2); "point": MAP estimate of A
    sigma_z: float | None = None  # (initial) std of z around A^T x (SPEC 2.1)
    learn_sigma_z: bool | None = None  # learn σ_z per latent dimension (type-II ML)
    tau_shared: float = 1.0  # prior std τ_s of shared rows of A
    tau_random: float = 1.0  # prior std τ_r of random-effect rows of A
    learn_tau: bool = True  # type-II ML of τ_s and of one τ_r per random column and latent dimension
    max_sigma_z: float | None = None  # upper bound of a learned σ_z (null: none)

    def resolve(self, objective: str) -> "OLMMOptions":
        gsnn = objective_kind(objective).samples_prior  # z drawn from the prior (SPEC 4)
        return dataclasses.replace(
            self,
            q_A=self.q_A if self.q_A is not None else (GSNN_Q_A if gsnn else ELBO_Q_A),
            sigma_z=self.sigma_z if self.sigma_z is not None else (GSNN_SIGMA_INIT if gsnn else ELBO_SIGMA_INIT),
            learn_sigma_z=self.learn_sigma_z if self.learn_sigma_z is not None else LEARN_SIGMA_Z,
        )  # learn_tau is kept as asked: OLMMPrior learns τ only with a Gaussian q(A) (see there)


#: q(A) when the config says none: a point (MAP) estimate under the ELBO, chosen on validation rows
#: of 3 data sets × 3 seeds (docs/recipe_study.md, "Defaults that generalise"); GSNN keeps the
#: mean-field Gaussian, whose draws make its loss a bound (SPEC 4), not measured against a point there
ELBO_Q_A = "point"
GSNN_Q_A = "gaussian"
#: initial σ_z under the ELBO and whether σ_z is learned (both objectives), chosen on validation data
ELBO_SIGMA_INIT = 1.0
LEARN_SIGMA_Z = True


def _positive(value: float, learn: bool, shape=()) -> nn.Parameter | torch.Tensor:
    raw = torch.full(shape, math.log(value))
    return nn.Parameter(raw) if learn else raw


class OLMMPrior(Prior):
    """SPEC 2: LMM prior over latents with q(A) Gaussian (or point) and analytic expected KL.

    ``infer``'s KL is, per batch row, the expected ``KL(q(z_i) || p(z_i | x_i, A))`` of SPEC 2.3 plus
    the row's share of the random-effect part of ``KL(q(A) || p(A))`` (see
    :meth:`MixedEffects.kl_random_rows`) as the local term, and the KL of the shared rows as the
    global term. With ``q_A: point`` the KL of ``A`` reduces to the Gaussian penalty ``M²/(2τ²)``
    (the point-mass limit, dropping its constant entropy): a MAP estimate (**choice**).
    """

    def __init__(self, latent_dim: int, n_shared: int, random_terms: list[tuple[int, int]],
                 level_counts: list[np.ndarray], options: OLMMOptions):
        super().__init__(latent_dim)
        unresolved = options.q_A is None or options.sigma_z is None or options.learn_sigma_z is None
        options = options.resolve("elbo") if unresolved else options
        self.options = options
        self.effects = MixedEffects(n_shared, random_terms, latent_dim, posterior=options.q_A,
                                    level_counts=level_counts)
        log_sigma = _positive(options.sigma_z, options.learn_sigma_z, (latent_dim,))
        log_tau = torch.log(torch.tensor([options.tau_shared, options.tau_random]))
        if options.learn_sigma_z:
            self.log_sigma_z = log_sigma
        else:
            self.register_buffer("log_sigma_z", log_sigma)
        # a point estimate of A has no KL whose log τ terms would hold τ: learning τ from the
        # penalty M²/(2τ²) alone would only grow it, so τ stays fixed with `q_A: point`
        if options.learn_tau and options.q_A == "gaussian":
            self.log_tau = nn.Parameter(log_tau)
            # learned random-effect variances: one τ per column of each random term and latent
            # dimension (an intercept and a slope differ in scale, as the G matrix of an LMM)
            self.log_tau_random = nn.ParameterList(
                [nn.Parameter(torch.full((f * latent_dim,), math.log(options.tau_random)))
                 for _, f in random_terms])  # each [F_t*L]
        else:
            self.register_buffer("log_tau", log_tau)
            self.log_tau_random = None

    @property
    def sigma_z2(self) -> torch.Tensor:
        log_sigma = self.log_sigma_z
        if self.options.max_sigma_z is not None:
            log_sigma = log_sigma.clamp(max=math.log(self.options.max_sigma_z))
        return (2 * log_sigma).exp()  # [L]

    def _prior_kl(self, batch: Batch, rows=None) -> KLTerms:
        tau_s, tau_r = self.log_tau.exp()
        if self.log_tau_random is not None:
            tau_r = [log_tau.exp() for log_tau in self.log_tau_random]  # per term [F_t*L]
        local = self.effects.kl_random_rows(batch.x, tau_r, rows).sum()
        return KLTerms(local=local, global_=self.effects.kl_shared(tau_s))

    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z_i)`` is the encoder's Gaussian (SPEC 2.2); the KL is SPEC 2.3:
        ``E_q(A) KL_il = ½[log σ_z² − log s² − 1 + (s² + (μ − x^T M)² + (x⊙x)^T(S⊙S)) / σ_z²]``."""
        q_z = encoded.as_normal()
        if not kl:
            return Inference(q_z, None)
        mu, s2 = q_z.mean, q_z.variance  # [B, L]
        rows = self.effects.gather(batch.x)  # random-effect rows, gathered once for all three terms
        prior_mean = self.effects.mean(batch.x, rows)  # [B, L]
        prior_var_a = self.effects.variance(batch.x, rows)  # [B, L]
        sigma2 = self.sigma_z2
        kl_z = 0.5 * (sigma2.log() - s2.log() - 1 + (s2 + (mu - prior_mean).square() + prior_var_a) / sigma2)
        a = self._prior_kl(batch, rows)
        return Inference(q_z, KLTerms(local=kl_z.sum() + a.local, global_=a.global_))

    def prior_kl(self, batch: Batch) -> KLTerms:
        return self._prior_kl(batch)

    def predict(self, batch: Batch) -> Normal:
        """SPEC 2.4: mean ``M^T x*``, variance ``σ_z² + (x*⊙x*)^T (S⊙S)``."""
        rows = self.effects.gather(batch.x)
        mean = self.effects.mean(batch.x, rows)
        var = self.sigma_z2 + self.effects.variance(batch.x, rows)
        return Normal(mean, var.sqrt())

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """SPEC 4: ``z_i^(s) = A^T x_i + σ_z ε_i^(s)`` with ONE ``A ~ q(A)`` per call: [S, B, L].

        ``A`` is drawn once, shared by every row of the batch (a random-effect row once per level
        present, :meth:`MixedEffects.sample`), and the ``S`` draws are of ``ε`` only. GSNN's
        log-mean-exp over ``s`` is then ``log E_ε p(y_i | A)`` for that ``A``, and the loss a lower bound
        on ``log p(Y)`` in expectation over steps. Drawing ``A`` afresh per row or per sample (each
        row's marginal ``N(x^T M, (x⊙x)^T(S⊙S) + σ_z²)``) puts ``E_q(A)`` inside the log: no bound,
        and a wide ``q(A)`` is rewarded as injected noise. With ``q_A: point`` both coincide.
        """
        mean = self.effects.sample(batch.x)  # [B, L], x_i^T A for one A ~ q(A)
        eps = torch.randn(n_samples, *mean.shape, dtype=mean.dtype, device=mean.device)  # [S, B, L]
        return mean + self.sigma_z2.sqrt() * eps

    def sparse_parameters(self) -> list[nn.Parameter]:
        return self.effects.sparse_parameters()

    def describe(self, design, objective) -> PriorDescription:
        """``q(A)``'s shared rows (mean ± sd, SPEC 2.2), per random column and latent dimension the
        learned ``τ`` (or the fixed ``τ_r``, SPEC 2.1), ``σ_z`` per latent dimension, and what a
        Gaussian ``q(A)`` means under ``objective`` (after GSNN: not a posterior, SPEC 4)."""
        def tau(t: int, n_cols: int) -> np.ndarray:  # [F_t, L]
            if self.log_tau_random is not None:  # learned: one τ per column and latent dimension
                return as_numpy(self.log_tau_random[t].exp()).reshape(n_cols, self.latent_dim)
            return np.full((n_cols, self.latent_dim), float(as_numpy(self.log_tau.exp())[1]))

        sigma_z = np.sqrt(as_numpy(self.sigma_z2).reshape(-1)) * np.ones(self.latent_dim)  # [L]
        return PriorDescription(
            fixed_effect_rows(self.effects, design), random_effect_rows(self.effects, design, tau),
            [(f"sigma_z[{name}]", float(v)) for name, v in zip(latent_names(self.latent_dim), sigma_z)],
            self._q_A_notes(objective))

    def _q_A_notes(self, objective) -> list[str]:
        """The objective's note on ``q(A)`` (SPEC 4), and whether its spread dwarfs the latent noise."""
        if objective.q_A_note is None or not self.effects.gaussian:
            return []
        notes = [objective.q_A_note]
        if self.effects.shared_mean.shape[0]:
            ratio = as_numpy((2 * self.effects.shared_log_std).exp() / self.sigma_z2)  # [Q_s, L]
            if float(ratio.mean()) > WIDE_Q_A_RATIO:
                notes.append(f"var(A)/sigma_z^2 is {ratio.mean():.3g} on average (max {ratio.max():.3g}): q(A) is "
                             "wider than the latent noise, and acts as noise injected in front of the decoder")
        return notes


#: a Gaussian q(A) after GSNN is called wide when its variance exceeds σ_z² on average (SPEC 4)
WIDE_Q_A_RATIO = 1.0
