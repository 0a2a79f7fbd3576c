"""The prior of sLMM-VAE: ``z_i = A^T x_i + ε_p(i)``, ``ε_p ~ N(0, σ_ε² I)`` (SPEC 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior
from lmmvae.model.priors.describe import PriorDescription, as_numpy, fixed_effect_rows, random_effect_rows
from lmmvae.model.priors.linear import MixedEffects


@dataclass
class SLMMOptions:
    """Options of sLMM-VAE (the YAML's ``prior:`` mapping); ``null`` = the objective's default.

    Defaults (chosen on validation data, docs/recipe_study.md): under the ELBO ``σ_ε = 1``, fixed
    (SPEC 3.1); under GSNN ``σ_ε`` is learned from a small start (SPEC 4: the GSNN loss is a
    marginal likelihood in it). The random-effect rows ``A_r`` of ``A`` (the design's ``(f | g)``
    terms) have the prior ``N(0, τ_r²)`` (SPEC 3.1): with ``random_effects: gaussian`` a mean-field
    Gaussian ``q(A_r)`` whose KL is in the ELBO and ``τ_r`` learned by type-II maximum likelihood, one
    per random column and latent dimension (``learn_tau``, as oLMM-VAE), so that subject slopes the
    data do not support shrink to 0; with ``random_effects: point`` a point estimate with the fixed
    MAP penalty ``‖A_r‖²/(2τ_r²)`` (the behaviour before; a run saved then loads as it was).
    ``tau_random`` is the fixed ``τ_r``, or where a learned one starts.
    """

    sigma_eps: float | None = None  # prior std σ_ε of a subject's latent deviation (SPEC 3.1)
    learn_sigma_eps: bool | None = None
    tau_random: float = 1.0  # prior std τ_r of the random-effect rows of A (fixed, or the start)
    random_effects: str = "gaussian"  # q of the random-effect rows of A: "gaussian" | "point"
    learn_tau: bool = True  # type-II ML of τ_r per random column and latent dimension (gaussian only)

    def resolve(self, objective: str) -> "SLMMOptions":
        gsnn = objective_kind(objective).samples_prior  # z drawn from the prior (SPEC 4)
        return SLMMOptions(
            sigma_eps=self.sigma_eps if self.sigma_eps is not None else (GSNN_SIGMA_INIT if gsnn else 1.0),
            learn_sigma_eps=self.learn_sigma_eps if self.learn_sigma_eps is not None else gsnn,
            tau_random=self.tau_random,
            random_effects=self.random_effects,
            learn_tau=self.learn_tau,
        )


#: initial noise scale σ under GSNN (oLMM σ_z, sLMM σ_ε), chosen on validation data (SPEC 4)
GSNN_SIGMA_INIT = 0.1


@dataclass
class SubjectPosterior:
    """``q(ε_p) = N(ν_p, diag ω_p²)`` for the subjects of a batch (SPEC 3.2)."""

    mean: torch.Tensor  # [n_subjects, L]  ν_p
    var: torch.Tensor  # [n_subjects, L]  ω_p²
    row_subject: torch.Tensor  # [B], position of each row's subject in mean/var


def subject_posterior(residual: torch.Tensor, var: torch.Tensor, subject: torch.Tensor,
                      sigma_eps2: torch.Tensor) -> SubjectPosterior:
    """Product of Gaussian experts per subject and latent dimension (SPEC 3.2).

    ``ω_p^{-2} = σ_ε^{-2} + Σ_{i∈p} s_i^{-2}`` and ``ν_p = ω_p² Σ_{i∈p} s_i^{-2} r_i``, with rows
    grouped by ``subject`` (any integer codes; grouping is by value).
    """
    uniq, row_subject = torch.unique(subject, return_inverse=True)
    n, latent = uniq.shape[0], residual.shape[1]
    precision_rows = 1.0 / var  # [B, L]
    precision = torch.zeros(n, latent, dtype=var.dtype, device=var.device).index_add_(0, row_subject, precision_rows)
    weighted = torch.zeros_like(precision).index_add_(0, row_subject, precision_rows * residual)
    precision = precision + 1.0 / sigma_eps2
    post_var = 1.0 / precision  # [n, L]
    return SubjectPosterior(mean=post_var * weighted, var=post_var, row_subject=row_subject)


class SLMMPrior(Prior):
    """SPEC 3: structured prior; shared rows of ``A`` a parameter, one deviation per subject.

    Batches are whole subjects (``batching = "subjects"``); the local KL is a sum over the batch's
    subjects of ``KL(q(ε_p) || N(0, σ_ε² I))`` plus the batch rows' shares of ``KL(q(A_r) || p(A_r))``,
    scaled by ``P/|B_subjects|`` in the objective. With ``M`` the mean of ``A`` (``q(A_r)`` Gaussian,
    or a point), the subject posterior reads the residuals ``μ_i − M^T x_i`` (SPEC 3.2) and
    ``q(z_i) = N(M^T x_i + ν_p, ω_p² + (x_i⊙x_i)^T (S⊙S))``, the marginal of ``A^T x_i + ε_p`` under
    ``q(A_r) q(ε_p)``; the reconstruction term draws each row from it (unbiased for the per-row
    expectations of SPEC 3.3).
    """

    batching = "subjects"

    def __init__(self, latent_dim: int, n_shared: int, random_terms: list[tuple[int, int]],
                 n_subjects: int, options: SLMMOptions, level_counts: list | None = None):
        super().__init__(latent_dim)
        options = options.resolve("elbo") if options.sigma_eps is None else options
        self.options = options
        if options.random_effects not in ("gaussian", "point"):
            raise ValueError(f"random_effects must be 'gaussian' or 'point', got {options.random_effects!r}")
        self.effects = MixedEffects(n_shared, random_terms, latent_dim, posterior="point",
                                    level_counts=level_counts, random_posterior=options.random_effects)
        self.register_buffer("tau_random", torch.tensor(float(options.tau_random)))
        # a point estimate has no KL whose log τ terms would hold τ (it would only grow): fixed then
        if options.random_effects == "gaussian" and options.learn_tau:
            self.log_tau_random = nn.ParameterList(  # each [F_t*L], laid out as the table's columns
                [nn.Parameter(torch.full((f * latent_dim,), math.log(options.tau_random))) for _, f in random_terms])
        else:
            self.log_tau_random = None
        log_sigma = torch.tensor(math.log(options.sigma_eps))
        if options.learn_sigma_eps:
            self.log_sigma_eps = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma_eps", log_sigma)
        # subject offsets ν_p, ω_p² from the training split, set by `condition` (SPEC 3.4); until
        # then (and always after GSNN, which trains no encoder: SPEC 4) ν_p = 0, ω_p² = σ_ε²
        self.register_buffer("train_offset_mean", torch.zeros(n_subjects, latent_dim))
        self.register_buffer("train_offset_var", torch.zeros(n_subjects, latent_dim))
        self.register_buffer("conditioned", torch.zeros((), dtype=torch.bool))

    @property
    def sigma_eps2(self) -> torch.Tensor:
        return (2 * self.log_sigma_eps).exp()

    def tau(self) -> "torch.Tensor | list[torch.Tensor]":
        """``τ_r``: one learned std per term as ``[F_t*L]`` tensors, or the fixed scalar."""
        if self.log_tau_random is None:
            return self.tau_random
        return [log_tau.exp() for log_tau in self.log_tau_random]

    def _subject_posterior(self, encoded: Encoded, batch: Batch, rows=None) -> tuple[torch.Tensor, SubjectPosterior]:
        fixed = self.effects.mean(batch.x, rows)  # [B, L], M^T x_i
        post = subject_posterior(encoded.mean - fixed, encoded.var, batch.subject, self.sigma_eps2)
        return fixed, post

    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z_i) = N(M^T x_i + ν_p, ω_p² + var(x_i^T A_r))`` and ``Σ_p KL(q(ε_p) ‖ N(0, σ_ε² I))``
        plus the random rows' KL, from one subject posterior and one gather (SPEC 3.2-3.3)."""
        rows = self.effects.gather(batch.x)
        fixed, post = self._subject_posterior(encoded, batch, rows)
        var = post.var[post.row_subject] + self.effects.variance(batch.x, rows)  # [B, L]
        q_z = Normal(fixed + post.mean[post.row_subject], var.sqrt())
        if not kl:
            return Inference(q_z, None)
        s2 = self.sigma_eps2
        terms = 0.5 * (s2.log() - post.var.log() - 1 + (post.var + post.mean.square()) / s2)
        # the random rows' KL is a sum over rows (weights 1/n_p); the subject KL a sum over
        # subjects: both are scaled by P/|B_subjects| with subject batches
        local = terms.sum() + self._prior_kl(batch, rows).local
        return Inference(q_z, KLTerms(local=local, global_=terms.new_zeros(())))

    def _prior_kl(self, batch: Batch, rows=None) -> KLTerms:
        local = self.effects.kl_random_rows(batch.x, self.tau(), rows).sum()
        return KLTerms(local=local, global_=local.new_zeros(()))

    def prior_kl(self, batch: Batch) -> KLTerms:
        """``Σ_t Σ_p KL(q(A_{t,p}) ‖ N(0, τ_r²))`` of the random-effect rows (SPEC 3.1, 4), or the MAP
        penalty ``‖A_{t,p}‖² / (2 τ_r²)`` with ``random_effects: point``, spread over each level's
        training rows with weight ``1/n_p`` (exact in sum). The shared rows have no prior."""
        return self._prior_kl(batch)

    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Store ``ν_p, ω_p²`` of every training subject (SPEC 3.4), from the residuals to ``M^T x_i``."""
        _, post = self._subject_posterior(encoded, batch)
        codes = torch.unique(batch.subject)
        keep = codes >= 0
        self.train_offset_mean.zero_()
        self.train_offset_var.fill_(float(self.sigma_eps2))
        self.train_offset_mean[codes[keep]] = post.mean[keep].detach()
        self.train_offset_var[codes[keep]] = post.var[keep].detach()
        self.conditioned.fill_(True)

    def predict(self, batch: Batch) -> Normal:
        """SPEC 3.4: ``z* = M^T x* + ν_p``, variance ``ω_p² + (x*⊙x*)^T (S⊙S)`` (the random rows'
        ``q``); ``ν_p = 0`` (``ω_p² = σ_ε²``) for an unseen subject, whose random rows are 0."""
        rows = self.effects.gather(batch.x)
        fixed = self.effects.mean(batch.x, rows)
        seen = ((batch.subject >= 0) & self.conditioned).unsqueeze(-1)
        idx = batch.subject.clamp(min=0)
        offset = torch.where(seen, self.train_offset_mean[idx], torch.zeros_like(fixed))
        var = torch.where(seen, self.train_offset_var[idx], self.sigma_eps2.expand_as(fixed))
        var = var + self.effects.variance(batch.x, rows)
        return Normal(fixed + offset, var.clamp_min(1e-12).sqrt())

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """SPEC 4: ``z_i^(s) = A^T x_i + ε^(s)``, ``ε^(s) ~ N(0, σ_ε² I)``, with ONE ``A ~ q(A)`` per call.

        The shared rows of ``A`` are a point; the random-effect rows (Gaussian ``q``) are drawn once
        per level present and shared by the batch's rows (:meth:`MixedEffects.sample`), outside the
        per-row log-mean-exp over ``ε``, so the GSNN loss stays a lower bound on ``log p(Y)`` in
        expectation (SPEC 4, "where A is drawn"). With ``random_effects: point`` it is ``M^T x_i``.
        A draw of ``ε`` shared by a subject's rows would carry nothing more (SPEC 4, "subject identity").
        """
        fixed = self.effects.sample(batch.x)  # [B, L], x_i^T A for one A ~ q(A)
        eps = torch.randn(n_samples, *fixed.shape, device=fixed.device, dtype=fixed.dtype)  # [S, B, L]
        return fixed + eps * self.log_sigma_eps.exp()

    def sparse_parameters(self) -> list[nn.Parameter]:
        return self.effects.sparse_parameters()

    def describe(self, design, objective) -> PriorDescription:
        """The shared rows of ``A`` (a parameter: point estimates, SPEC 3.1), per random column and
        latent dimension the learned ``τ_r`` (or the fixed one), and ``σ_ε``. No note on ``q(A)``
        under any objective: its shared rows have no ``q``."""
        def tau(t: int, n_cols: int) -> np.ndarray:  # [F_t, L]
            if self.log_tau_random is not None:
                return as_numpy(self.log_tau_random[t].exp()).reshape(n_cols, self.latent_dim)
            return np.full((n_cols, self.latent_dim), float(as_numpy(self.tau_random)))

        sigma_eps = float(np.sqrt(as_numpy(self.sigma_eps2)).reshape(-1)[0])
        return PriorDescription(fixed_effect_rows(self.effects, design),
                                random_effect_rows(self.effects, design, tau), [("sigma_eps", sigma_eps)])
