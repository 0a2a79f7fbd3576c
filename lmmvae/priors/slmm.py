"""The prior of sLMM-VAE: ``z_i = A^T x_i + ε_p(i)``, ``ε_p ~ N(0, σ_ε² I)`` (SPEC 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal

from lmmvae.batch import Batch
from lmmvae.priors.base import Encoded, Inference, KLTerms, Prior
from lmmvae.priors.linear import MixedEffects


@dataclass
class SLMMOptions:
    """Options of sLMM-VAE (the YAML's ``prior:`` mapping); ``null`` = the objective's default.

    Defaults (chosen on validation data, docs/recipe_study.md): under the ELBO ``σ_ε = 1``, fixed
    (SPEC 3.1); under GSNN ``σ_ε`` is learned from a small start (SPEC 4: the GSNN loss is a
    marginal likelihood in it). ``tau_random`` is the prior std of the random-effect rows of ``A``,
    a penalty ``‖A_r‖²/(2τ_r²)`` (SPEC 4: under GSNN the subject enters only through them).
    """

    sigma_eps: float | None = None  # prior std σ_ε of a subject's latent deviation (SPEC 3.1)
    learn_sigma_eps: bool | None = None
    tau_random: float = 1.0  # prior std τ_r of the random-effect rows of A (MAP penalty)

    def resolve(self, objective: str) -> "SLMMOptions":
        gsnn = objective == "gsnn"
        return SLMMOptions(
            sigma_eps=self.sigma_eps if self.sigma_eps is not None else (GSNN_SIGMA_INIT if gsnn else 1.0),
            learn_sigma_eps=self.learn_sigma_eps if self.learn_sigma_eps is not None else gsnn,
            tau_random=self.tau_random,
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
    """SPEC 3: structured prior; ``A`` a parameter (no prior), one deviation per subject.

    Batches are whole subjects (``batching = "subjects"``); the local KL is a sum over the batch's
    subjects of ``KL(q(ε_p) || N(0, σ_ε² I))``, scaled by ``P/|B_subjects|`` in the objective.
    ``q(z_i) = N(A^T x_i + ν_p, ω_p²)``; the reconstruction term draws each row from this marginal
    (unbiased for the per-row expectations of SPEC 3.3).
    """

    batching = "subjects"

    def __init__(self, latent_dim: int, n_shared: int, random_terms: list[tuple[int, int]],
                 n_subjects: int, options: SLMMOptions, level_counts: list | None = None):
        super().__init__(latent_dim)
        options = options.resolve("elbo") if options.sigma_eps is None else options
        self.options = options
        self.effects = MixedEffects(n_shared, random_terms, latent_dim, posterior="point",
                                    level_counts=level_counts)
        self.register_buffer("tau_random", torch.tensor(float(options.tau_random)))
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

    def _subject_posterior(self, encoded: Encoded, batch: Batch) -> tuple[torch.Tensor, SubjectPosterior]:
        fixed = self.effects.mean(batch.x)  # [B, L]
        post = subject_posterior(encoded.mean - fixed, encoded.var, batch.subject, self.sigma_eps2)
        return fixed, post

    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z_i) = N(A^T x_i + ν_p, ω_p²)`` and ``Σ_p KL(q(ε_p) ‖ N(0, σ_ε² I))`` from one subject
        posterior (SPEC 3.2-3.3)."""
        fixed, post = self._subject_posterior(encoded, batch)
        q_z = Normal(fixed + post.mean[post.row_subject], post.var[post.row_subject].sqrt())
        if not kl:
            return Inference(q_z, None)
        s2 = self.sigma_eps2
        terms = 0.5 * (s2.log() - post.var.log() - 1 + (post.var + post.mean.square()) / s2)
        # the random rows' penalty is a sum over rows (weights 1/n_p); the subject KL a sum over
        # subjects: both are scaled by P/|B_subjects| with subject batches
        local = terms.sum() + self.prior_kl(batch).local
        return Inference(q_z, KLTerms(local=local, global_=terms.new_zeros(())))

    def prior_kl(self, batch: Batch) -> KLTerms:
        """``Σ_t Σ_p ‖A_{t,p}‖² / (2 τ_r²)``, the MAP penalty of the random-effect rows (SPEC 4),
        spread over each level's training rows with weight ``1/n_p`` (exact in sum)."""
        local = self.effects.kl_random_rows(batch.x, self.tau_random).sum()
        return KLTerms(local=local, global_=local.new_zeros(()))

    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Store ``ν_p, ω_p²`` of every training subject (SPEC 3.4)."""
        _, post = self._subject_posterior(encoded, batch)
        codes = torch.unique(batch.subject)
        keep = codes >= 0
        self.train_offset_mean.zero_()
        self.train_offset_var.fill_(float(self.sigma_eps2))
        self.train_offset_mean[codes[keep]] = post.mean[keep].detach()
        self.train_offset_var[codes[keep]] = post.var[keep].detach()
        self.conditioned.fill_(True)

    def predict(self, batch: Batch) -> Normal:
        """SPEC 3.4: ``z* = A^T x* + ν_p``; ``ν_p = 0`` (variance σ_ε²) for an unseen subject."""
        fixed = self.effects.mean(batch.x)
        seen = ((batch.subject >= 0) & self.conditioned).unsqueeze(-1)
        idx = batch.subject.clamp(min=0)
        offset = torch.where(seen, self.train_offset_mean[idx], torch.zeros_like(fixed))
        var = torch.where(seen, self.train_offset_var[idx], self.sigma_eps2.expand_as(fixed))
        return Normal(fixed + offset, var.clamp_min(1e-12).sqrt())

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """SPEC 4: ``z_i^(s) = A^T x_i + ε^(s)``, ``ε^(s) ~ N(0, σ_ε² I)``.

        ``A`` is a point parameter here (its random-effect rows carry only a MAP penalty), so there is
        no ``q(A)`` to draw inside the log: the sum of per-row log-mean-exps over ``ε`` is already
        a lower bound on ``log p(Y | A)`` in expectation (SPEC 4, "where A is drawn"). A draw of ``ε``
        shared by a subject's rows would carry nothing more (SPEC 4, "subject identity").
        """
        fixed = self.effects.mean(batch.x)  # [B, L]
        eps = torch.randn(n_samples, *fixed.shape, device=fixed.device, dtype=fixed.dtype)  # [S, B, L]
        return fixed + eps * self.log_sigma_eps.exp()

    def sparse_parameters(self) -> list[nn.Parameter]:
        return self.effects.sparse_parameters()
