"""The prior of sLMM-VAE: ``z_i = A^T x_i + ε_p(i)``, ``ε_p ~ N(0, σ_ε² I)`` (SPEC 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal

from lmmvae.batch import Batch
from lmmvae.priors.base import Encoded, KLTerms, Prior
from lmmvae.priors.linear import MixedEffects


@dataclass
class SLMMOptions:
    """Options of sLMM-VAE (the YAML's ``prior:`` mapping)."""

    sigma_eps: float = 1.0  # prior std σ_ε of a subject's latent deviation (SPEC 3.1)
    learn_sigma_eps: bool = False


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
                 n_subjects: int, options: SLMMOptions):
        super().__init__(latent_dim)
        self.options = options
        self.effects = MixedEffects(n_shared, random_terms, latent_dim, posterior="point")
        log_sigma = torch.tensor(math.log(options.sigma_eps))
        if options.learn_sigma_eps:
            self.log_sigma_eps = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma_eps", log_sigma)
        # subject offsets ν_p, ω_p² from the training split, set by `condition` (SPEC 3.4)
        self.register_buffer("train_offset_mean", torch.zeros(n_subjects, latent_dim))
        self.register_buffer("train_offset_var", torch.zeros(n_subjects, latent_dim))

    @property
    def sigma_eps2(self) -> torch.Tensor:
        return (2 * self.log_sigma_eps).exp()

    def _subject_posterior(self, encoded: Encoded, batch: Batch) -> tuple[torch.Tensor, SubjectPosterior]:
        fixed = self.effects.mean(batch.x)  # [B, L]
        post = subject_posterior(encoded.mean - fixed, encoded.var, batch.subject, self.sigma_eps2)
        return fixed, post

    def posterior(self, encoded: Encoded, batch: Batch) -> Normal:
        fixed, post = self._subject_posterior(encoded, batch)
        mean = fixed + post.mean[post.row_subject]
        return Normal(mean, post.var[post.row_subject].sqrt())

    def kl(self, q_z: Normal, encoded: Encoded, batch: Batch) -> KLTerms:
        _, post = self._subject_posterior(encoded, batch)
        s2 = self.sigma_eps2
        kl = 0.5 * (s2.log() - post.var.log() - 1 + (post.var + post.mean.square()) / s2)
        return KLTerms(local=kl.sum(), global_=kl.new_zeros(()))

    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Store ``ν_p, ω_p²`` of every training subject (SPEC 3.4)."""
        _, post = self._subject_posterior(encoded, batch)
        codes = torch.unique(batch.subject)
        keep = codes >= 0
        self.train_offset_mean.zero_()
        self.train_offset_var.fill_(float(self.sigma_eps2))
        self.train_offset_mean[codes[keep]] = post.mean[keep].detach()
        self.train_offset_var[codes[keep]] = post.var[keep].detach()

    def predict(self, batch: Batch) -> Normal:
        """SPEC 3.4: ``z* = A^T x* + ν_p``; ``ν_p = 0`` (variance σ_ε²) for an unseen subject."""
        fixed = self.effects.mean(batch.x)
        seen = (batch.subject >= 0).unsqueeze(-1)
        idx = batch.subject.clamp(min=0)
        offset = torch.where(seen, self.train_offset_mean[idx], torch.zeros_like(fixed))
        var = torch.where(seen, self.train_offset_var[idx], self.sigma_eps2.expand_as(fixed))
        return Normal(fixed + offset, var.clamp_min(1e-12).sqrt())

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """SPEC 4: ``z_i^(s) = A^T x_i + ε_p^(s)``, one ``ε_p^(s)`` shared by a subject's rows."""
        fixed = self.effects.mean(batch.x)  # [B, L]
        uniq, row_subject = torch.unique(batch.subject, return_inverse=True)
        eps = torch.randn(n_samples, uniq.shape[0], self.latent_dim, device=fixed.device) * self.log_sigma_eps.exp()
        return fixed + eps[:, row_subject]  # [S, B, L]

    def sparse_parameters(self) -> list[nn.Parameter]:
        return self.effects.sparse_parameters()
